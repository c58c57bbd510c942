//! `keyward`: the keyward API from a terminal and from scripts. Commands mirror the API; request
//! and response bodies are the Worker's own types (the `keyward` crate), so the client and the
//! server share one definition of the contract.

mod client;
mod commands;
mod config;
mod secret;
mod table;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// The exit statuses, for `--help`.
fn exit_help() -> String {
    let mut s = String::from("Exit status:\n");
    for (n, what) in client::EXIT_STATUSES {
        s.push_str(&format!("  {n}  {what}\n"));
    }
    s.push_str(
        "\nConfiguration: --url over KEYWARD_URL over the profile's url; --token-file over\n\
         KEYWARD_TOKEN over the profile's token (user commands); --admin-token-file over\n\
         KEYWARD_ADMIN_TOKEN over the profile's admin_token (keyward admin ...). Profiles live in\n\
         <config dir>/keyward/config.json (KEYWARD_CONFIG names another file), written by\n\
         `keyward login` with mode 0600. Secrets are never taken on the command line: they come\n\
         from a prompt without echo, a file, or standard input (`-`).",
    );
    s
}

#[derive(Parser)]
#[command(
    name = "keyward",
    version,
    about = "Manage keyward: tenants, users and their keys, providers, defaults, gateway keys, the relay",
    after_help = exit_help(),
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// The deployment's base URL, e.g. https://keyward.example.com
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The profile of the config file to use (default: the file's default, else `default`)
    #[arg(long, global = true, env = "KEYWARD_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Read the user key from this file (`-`: standard input)
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<String>,
    /// Read the admin token from this file (`-`: standard input)
    #[arg(long, global = true, value_name = "PATH")]
    pub admin_token_file: Option<String>,
    /// Print the API's `data` as JSON, unchanged, instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Store a deployment's URL and a token (read from a prompt or standard input) as a profile
    Login(LoginArgs),
    /// Remove a profile from the config file
    Logout {
        /// The profile (default: the one in use)
        #[arg(value_name = "PROFILE")]
        name: Option<String>,
    },
    /// The admin API (needs the admin token)
    #[command(subcommand)]
    Admin(Admin),
    /// Who the user key belongs to
    Me,
    /// Your own API keys
    #[command(subcommand)]
    Keys(Keys),
    /// The provider catalog and your tenant's provider connections
    #[command(subcommand)]
    Models(Models),
    /// Your tenant's default model of each type
    #[command(subcommand)]
    Defaults(Defaults),
    /// Gateway keys: a provider key for one model, with token limits, used through the relay
    #[command(subcommand, name = "ai-keys")]
    AiKeys(AiKeys),
    /// Tokens used: per model, per gateway key
    #[command(subcommand)]
    Usage(Usage),
    /// Your tenant's webhook for budget alerts (owners and admins)
    #[command(subcommand)]
    Webhook(Webhook),
    /// The OpenAI-compatible relay
    #[command(subcommand)]
    Relay(Relay),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
pub struct LoginArgs {
    /// Store the admin token (else a user key)
    #[arg(long)]
    pub admin: bool,
    /// Store without checking the token against the deployment
    #[arg(long)]
    pub no_verify: bool,
    /// Make this profile the default
    #[arg(long)]
    pub default: bool,
}

#[derive(Subcommand)]
pub enum Admin {
    /// Tenants
    #[command(subcommand)]
    Tenants(Tenants),
    /// Users
    #[command(subcommand)]
    Users(Users),
    /// A user's API keys
    #[command(subcommand)]
    Keys(UserKeys),
    /// Deployment settings for keys
    #[command(subcommand)]
    Settings(Settings),
    /// The audit log, newest first
    Audit(AuditArgs),
}

/// How many rows a list shows, and how many it asks for at a time.
#[derive(Args, Clone, Copy)]
pub struct Paging {
    /// Show at most this many rows (default: follow every page)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Rows asked for per request (1 to 1000; default 100)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub page_size: Option<u64>,
}

#[derive(Subcommand)]
pub enum Tenants {
    /// List tenants, oldest first
    List(Paging),
    /// Create a tenant
    Create { name: String },
    /// Show a tenant
    Get { id: String },
    /// Delete a tenant with its users and their keys
    Delete { id: String },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Owner,
    Admin,
    Member,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Active,
    Disabled,
}

#[derive(Subcommand)]
pub enum Users {
    /// List users, oldest first
    List(Paging),
    /// Create a user (without --tenant-id, in a new tenant of their own, as its owner)
    Create {
        username: String,
        #[arg(long)]
        tenant_id: Option<String>,
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
    },
    /// Show a user
    Get { username: String },
    /// Change a user's role or status (a disabled user's keys stop working at once)
    Update {
        username: String,
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
    },
    /// Delete a user and their keys
    Delete { username: String },
}

/// The new key's description and lifetime.
#[derive(Args, Clone)]
pub struct NewKey {
    /// Free text, at most 256 characters
    #[arg(long)]
    pub description: Option<String>,
    /// Lifetime in minutes (default: the deployment's maximum)
    #[arg(long, value_name = "MINUTES")]
    pub ttl_minutes: Option<i64>,
    /// Print only the token
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Subcommand)]
pub enum UserKeys {
    /// List a user's keys (never a secret)
    List {
        username: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Issue a key for a user: its token is printed once, on its own line
    Create {
        username: String,
        #[command(flatten)]
        key: NewKey,
    },
    /// Revoke a user's key
    #[command(alias = "revoke")]
    Delete { username: String, id: String },
}

#[derive(Subcommand)]
pub enum Settings {
    /// Show the settings
    Get,
    /// Change some settings; the others keep their value
    Set {
        /// Longest key lifetime in minutes (0: no limit)
        #[arg(long, value_name = "MINUTES")]
        max_ttl_minutes: Option<i64>,
        /// Whether users may create keys for themselves
        #[arg(long, value_name = "BOOL")]
        self_service_keys: Option<bool>,
        /// Most unexpired keys per user
        #[arg(long, value_name = "N")]
        max_keys_per_user: Option<i64>,
        /// Most gateway keys per tenant
        #[arg(long, value_name = "N")]
        max_ai_keys_per_tenant: Option<i64>,
        /// Most provider connections per tenant
        #[arg(long, value_name = "N")]
        max_connections_per_tenant: Option<i64>,
    },
}

/// A gateway key's limits over time (0: none).
#[derive(Args)]
pub struct OverTimeArgs {
    /// Most requests per minute
    #[arg(long, value_name = "N")]
    pub rpm_limit: Option<i64>,
    /// Most tokens (input and output) per minute
    #[arg(long, value_name = "N")]
    pub tpm_limit: Option<i64>,
    /// Most tokens per budget period
    #[arg(long, value_name = "N")]
    pub token_budget: Option<i64>,
    /// The budget's period, in UTC
    #[arg(long, value_enum)]
    pub budget_period: Option<PeriodArg>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PeriodArg {
    Day,
    Week,
    Month,
    Total,
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only this tenant's entries
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Only entries at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    #[command(flatten)]
    pub paging: Paging,
}

#[derive(Subcommand)]
pub enum Keys {
    /// Create a key for yourself: its token is printed once, on its own line
    Create(NewKey),
    /// List your keys (never a secret)
    List(Paging),
    /// Give a key a new secret, printed once; the old one works for the grace period
    Rotate {
        id: String,
        /// Minutes the old secret keeps working (0 to 1440; default 0)
        #[arg(long, value_name = "MINUTES")]
        grace_minutes: Option<i64>,
        /// Print only the token
        #[arg(short, long)]
        quiet: bool,
    },
    /// Revoke one of your keys
    #[command(alias = "revoke")]
    Delete { id: String },
    /// What your next key may be: its longest lifetime, how many keys you hold
    Limits,
}

#[derive(Subcommand)]
pub enum Models {
    /// The provider catalog; with a factory, its models
    Catalog { factory: Option<String> },
    /// Connect a provider or add a model (the key is read from a file, standard input or a prompt)
    Add(Box<AddModelArgs>),
    /// Your tenant's models by factory
    List {
        /// Also each model's URL, status and masked key
        #[arg(long)]
        details: bool,
    },
    /// Remove a factory's connection(s), or one model's
    Remove {
        factory: String,
        #[arg(long, value_name = "NAME")]
        llm_name: Option<String>,
    },
}

#[derive(Args)]
pub struct AddModelArgs {
    /// The factory, as `keyward models catalog` names it
    pub factory: String,
    /// Read the provider key from this file (`-`: standard input); without it, a factory that
    /// needs a key asks for it (or reads standard input when it is not a terminal)
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<String>,
    /// OpenAI-API-Compatible: read a bearer token from this file (`-`: standard input)
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<String>,
    /// VertexAI: the service-account JSON file (`-`: standard input)
    #[arg(long, value_name = "PATH")]
    pub credentials_file: Option<String>,
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub llm_name: Option<String>,
    #[arg(long, value_name = "TYPE")]
    pub model_type: Option<String>,
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<i64>,
    /// Store without proving the credential with a live call
    #[arg(long)]
    pub no_verify: bool,
    /// Azure-OpenAI: the deployment's name
    #[arg(long)]
    pub deployment: Option<String>,
    /// Azure-OpenAI: the resource endpoint
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Azure-OpenAI: the API version
    #[arg(long)]
    pub api_version: Option<String>,
    /// VertexAI: the project (default: the credentials' project_id)
    #[arg(long)]
    pub project_id: Option<String>,
    /// VertexAI: the region
    #[arg(long)]
    pub location: Option<String>,
}

/// A default's model type, as its flag names it.
#[derive(Args, Default)]
pub struct DefaultIds {
    /// The default chat model (`name@factory`)
    #[arg(long, value_name = "MODEL")]
    pub chat: Option<String>,
    #[arg(long, value_name = "MODEL")]
    pub embedding: Option<String>,
    #[arg(long, value_name = "MODEL")]
    pub speech2text: Option<String>,
    #[arg(long, value_name = "MODEL")]
    pub image2text: Option<String>,
    #[arg(long, value_name = "MODEL")]
    pub rerank: Option<String>,
    #[arg(long, value_name = "MODEL")]
    pub tts: Option<String>,
}

#[derive(Subcommand)]
pub enum Defaults {
    /// Show the six defaults
    Get,
    /// Set some defaults; the others stay
    Set(DefaultIds),
    /// Clear the named defaults (or --all)
    Clear {
        #[arg(long)]
        chat: bool,
        #[arg(long)]
        embedding: bool,
        #[arg(long)]
        speech2text: bool,
        #[arg(long)]
        image2text: bool,
        #[arg(long)]
        rerank: bool,
        #[arg(long)]
        tts: bool,
        #[arg(long, conflicts_with_all = ["chat", "embedding", "speech2text", "image2text", "rerank", "tts"])]
        all: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    Reject,
    UseAnyway,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum KeyStatusArg {
    Enabled,
    Disabled,
}

#[derive(Subcommand)]
pub enum AiKeys {
    /// Create a gateway key; the provider key(s) come from files, standard input (one per line)
    /// or a prompt
    Create {
        alias: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        model: String,
        /// A provider key's file (`-`: standard input, one key per line); repeat for a pool
        #[arg(long, value_name = "PATH")]
        api_key_file: Vec<String>,
        /// Most input tokens per request (0: unlimited)
        #[arg(long, default_value_t = 0, value_name = "N")]
        input_limit: i64,
        /// Most output tokens per chat request (0: unlimited)
        #[arg(long, value_name = "N")]
        output_limit: Option<i64>,
        #[arg(long, value_enum)]
        policy: Option<PolicyArg>,
        #[command(flatten)]
        over_time: OverTimeArgs,
        /// enabled or disabled (default disabled)
        #[arg(long, value_enum)]
        status: Option<KeyStatusArg>,
        /// When it stops working (RFC 3339)
        #[arg(long, value_name = "TIME")]
        expire_time: Option<String>,
    },
    /// List the tenant's gateway keys, newest first
    List {
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long, value_enum)]
        status: Option<KeyStatusArg>,
        /// Only this page (from 1), as the API answers it
        #[arg(long, value_name = "N")]
        page: Option<u64>,
        /// Show at most this many keys (default: follow every page)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Keys per request (1 to 100; default 100)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100))]
        page_size: Option<u64>,
    },
    /// Show a gateway key with its usage
    Get { id: String },
    /// Change a gateway key; only the flags given change
    Update {
        id: String,
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// Replace the provider key(s) from files (`-`: standard input, one key per line)
        #[arg(long, value_name = "PATH")]
        api_key_file: Vec<String>,
        #[arg(long, value_name = "N")]
        input_limit: Option<i64>,
        #[arg(long, value_name = "N")]
        output_limit: Option<i64>,
        #[arg(long, value_enum)]
        policy: Option<PolicyArg>,
        #[command(flatten)]
        over_time: OverTimeArgs,
        #[arg(long, value_enum)]
        status: Option<KeyStatusArg>,
        #[arg(long, value_name = "TIME", conflicts_with = "no_expiry")]
        expire_time: Option<String>,
        /// Never expire
        #[arg(long)]
        no_expiry: bool,
    },
    /// Delete a gateway key
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum Webhook {
    /// Show the webhook: its URL and a hint of its secret
    Get,
    /// Set where budget alerts are posted. Without --secret-file the current secret is kept; a
    /// new webhook (or --new-secret) gets a generated one, printed this once on its own line
    Set {
        /// Where events are posted (https; http only to a loopback or private address)
        #[arg(value_name = "URL")]
        webhook_url: String,
        /// A file holding the signing secret you chose (`-`: standard input), 16 to 256 characters
        #[arg(long, value_name = "PATH", conflicts_with = "new_secret")]
        secret_file: Option<String>,
        /// Replace the secret with a generated one
        #[arg(long)]
        new_secret: bool,
    },
    /// Post a signed test event now and say how the receiver answered
    Test,
    /// Remove the webhook: budget alerts are no longer posted
    Delete,
}

#[derive(Subcommand)]
pub enum Usage {
    /// Tokens used per model of your tenant
    Models,
    /// Tokens used per gateway key
    #[command(name = "ai-keys")]
    AiKeys,
    /// Usage over time, per hour or day (UTC): the tenant's, one model's or one gateway key's
    History {
        /// Only this gateway key (its id)
        #[arg(long, value_name = "ID", conflicts_with = "model")]
        ai_key_id: Option<String>,
        /// Only this model, as name@factory
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        /// hour (default) or day
        #[arg(long, value_enum)]
        granularity: Option<GranularityArg>,
        /// From this RFC 3339 time (default: a day, or 30 days by the day, before --to)
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Up to this RFC 3339 time (default: now)
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum GranularityArg {
    Hour,
    Day,
}

#[derive(Subcommand)]
pub enum Relay {
    /// One chat completion through the relay; prints the reply
    Chat {
        /// The message (default: standard input)
        message: Option<String>,
        /// A gateway key alias, a model `name@factory` (default: the tenant's default)
        #[arg(long)]
        model: Option<String>,
        /// A system prompt
        #[arg(long)]
        system: Option<String>,
        /// Most output tokens
        #[arg(long, value_name = "N")]
        max_tokens: Option<u64>,
        /// Print the reply as it arrives
        #[arg(long)]
        stream: bool,
    },
    /// The models the relay serves
    Models,
}

fn main() -> ExitCode {
    // `keyward ... | head` closes the pipe early: end quietly as other Unix tools do, instead of
    // Rust's default of ignoring SIGPIPE and panicking on the next write.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "keyward",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("keyward: {}", table::clean(f.message()));
            ExitCode::from(f.exit_status() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_exit_status() {
        let help = Cli::command().render_help().to_string();
        for (n, what) in client::EXIT_STATUSES {
            assert!(
                help.contains(&format!("  {n}  {what}")),
                "{n} missing from:\n{help}"
            );
        }
    }

    #[test]
    fn no_flag_takes_a_secret_itself() {
        // Every flag that names a secret takes a file; none takes the value.
        fn walk(cmd: &clap::Command, bad: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                // By word: `max_tokens` and `max_keys_per_user` are counts, not secrets, and so is
                // `token_budget` (tokens per period).
                // An identifier (`ai_key_id`) names a record, not a secret.
                let secretive = id != "token_budget"
                    && !id.ends_with("_id")
                    && id.split('_').any(|w| {
                        ["token", "key", "secret", "credentials", "password"].contains(&w)
                    });
                let takes_a_file = id.ends_with("_file");
                if secretive && !takes_a_file && a.get_action().takes_values() {
                    bad.push(format!("{} --{id}", cmd.get_name()));
                }
            }
            for s in cmd.get_subcommands() {
                walk(s, bad);
            }
        }
        let mut bad = Vec::new();
        walk(&Cli::command(), &mut bad);
        assert_eq!(bad, Vec::<String>::new());
    }
}
