//! Each command: the request it sends (the Worker's own body types) and how its answer is shown,
//! as a table for people or, with `--json`, the API's `data` exactly as it came.

use crate::client::{query, seg, Answer, Client, Failure, Result};
use crate::config::{self, ConfigFile, Resolved};
use crate::secret::{self, Source};
use crate::table::{fields, opt, Table};
use crate::*;
use keyward::api::admin::{
    AuditEntryView, CreateTenant, CreateUser, PatchUser, PutSettings, SettingsView, TenantView,
    UserView,
};
use keyward::api::ai_keys::{AiKeyView, CreateAiKey, UpdateAiKey};
use keyward::api::defaults::{DefaultModels, SetDefaults};
use keyward::api::keys::{CreateKey, CreatedKey, KeyLimits, KeyView, Rotate, RotatedKey};
use keyward::api::me::MeView;
use keyward::api::models::{FactoryModels, FactoryView, RemoveModel};
use keyward::api::relay::RelayModelList;
use keyward::api::usage::{UsagePage, UsagePoint};
use keyward::api::webhooks::{PutWebhook, TestDelivery, WebhookView};
use keyward::catalog::Auth as FactoryAuth;
use keyward::domain::names::{Role, UserStatus};
use keyward::providers::AddModel;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

/// The process environment, read through one function so tests can give their own.
fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// What every command needs: the output mode and the resolved URL and credentials.
struct Ctx {
    json: bool,
    resolved: Resolved,
}

impl Ctx {
    fn url(&self) -> Result<&str> {
        let url = self.resolved.url.as_deref().ok_or_else(|| {
            Failure::BadInput(
                "no URL: give --url, set KEYWARD_URL, or store one with keyward login".into(),
            )
        })?;
        if let Some(warning) = crate::client::check_base(url)? {
            eprintln!("{warning}");
        }
        Ok(url)
    }

    /// A client with the user key.
    fn user(&self) -> Result<Client> {
        let url = self.url()?;
        let token = self.resolved.token.clone().ok_or_else(|| {
            Failure::Auth(format!(
                "no user key: set KEYWARD_TOKEN, give --token-file, or run keyward login (profile {})",
                self.resolved.profile
            ))
        })?;
        Ok(Client::new(url, Some(token)))
    }

    /// A client with the admin token.
    fn admin(&self) -> Result<Client> {
        let url = self.url()?;
        let token = self.resolved.admin_token.clone().ok_or_else(|| {
            Failure::Auth(format!(
                "no admin token: set KEYWARD_ADMIN_TOKEN, give --admin-token-file, or run keyward login --admin (profile {})",
                self.resolved.profile
            ))
        })?;
        Ok(Client::new(url, Some(token)))
    }

    /// `--json`: the data as the API sent it; otherwise the table `human` prints.
    fn show(&self, a: &Answer, human: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.json {
            println!("{}", a.data.get());
            Ok(())
        } else {
            human()
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    let path = config::path(&process_env)?;
    let file = ConfigFile::load(&path)?;
    match cli.command {
        Command::Login(args) => return login(&g, &args, &path, file),
        Command::Logout { name } => return logout(&g, name, &path, file),
        Command::Completions { .. } => return Ok(()),
        _ => {}
    }
    let (name, profile) = file.profile(g.profile.as_deref())?;
    let read_flag = |f: &Option<String>, what: &str| {
        f.as_deref()
            .map(|p| secret::read_one(&Source::from_flag(Some(p)), what))
            .transpose()
    };
    let token = read_flag(&g.token_file, "user key")?;
    let admin_token = read_flag(&g.admin_token_file, "admin token")?;
    let resolved = config::resolve(
        g.url.clone(),
        token,
        admin_token,
        &process_env,
        name,
        profile,
    );
    let ctx = Ctx {
        json: g.json,
        resolved,
    };
    match cli.command {
        Command::Login(_) | Command::Logout { .. } | Command::Completions { .. } => Ok(()),
        Command::Admin(a) => admin(&ctx, a),
        Command::Me => me(&ctx),
        Command::Keys(k) => keys(&ctx, k),
        Command::Models(m) => models(&ctx, m),
        Command::Defaults(d) => defaults(&ctx, d),
        Command::AiKeys(k) => ai_keys(&ctx, k),
        Command::Usage(u) => usage(&ctx, u),
        Command::Webhook(w) => webhook(&ctx, w),
        Command::Relay(r) => relay(&ctx, r),
    }
}

// ---------------------------------------------------------------- login

fn login(g: &Global, args: &LoginArgs, path: &std::path::Path, mut file: ConfigFile) -> Result<()> {
    let name = g
        .profile
        .clone()
        .or_else(|| file.default_profile.clone())
        .unwrap_or_else(|| config::DEFAULT_PROFILE.to_owned());
    let mut profile = file.profiles.get(&name).cloned().unwrap_or_default();
    let url = g
        .url
        .clone()
        .or_else(|| process_env("KEYWARD_URL"))
        .filter(|u| !u.trim().is_empty())
        .or(profile.url.clone())
        .ok_or_else(|| Failure::BadInput("keyward login needs --url (or KEYWARD_URL)".into()))?;
    if let Some(warning) = crate::client::check_base(&url)? {
        eprintln!("{warning}");
    }
    let (flag, what) = if args.admin {
        (g.admin_token_file.as_deref(), "admin token")
    } else {
        (g.token_file.as_deref(), "user key")
    };
    let token = secret::read_one(&Source::from_flag(flag), what)?;
    let who = if args.no_verify {
        "not checked".to_owned()
    } else {
        let c = Client::new(&url, Some(token.clone()));
        if args.admin {
            c.get("/api/v1/admin/settings")?;
            "the admin token".to_owned()
        } else {
            let me: MeView = c.get("/api/v1/me")?.parse()?;
            format!("{} in tenant {}", me.username, me.tenant_id)
        }
    };
    profile.url = Some(url.clone());
    if args.admin {
        profile.admin_token = Some(token);
    } else {
        profile.token = Some(token);
    }
    file.profiles.insert(name.clone(), profile);
    if args.default || file.default_profile.is_none() {
        file.default_profile = Some(name.clone());
    }
    file.save(path)?;
    eprintln!(
        "Saved profile {name} for {url} ({}) in {}",
        crate::table::clean(&who),
        path.display()
    );
    Ok(())
}

fn logout(
    g: &Global,
    name: Option<String>,
    path: &std::path::Path,
    mut file: ConfigFile,
) -> Result<()> {
    let name = name
        .or_else(|| g.profile.clone())
        .or_else(|| file.default_profile.clone())
        .unwrap_or_else(|| config::DEFAULT_PROFILE.to_owned());
    if file.profiles.remove(&name).is_none() {
        return Err(Failure::NotFound(format!("no profile named {name}")));
    }
    if file.default_profile.as_deref() == Some(name.as_str()) {
        file.default_profile = None;
    }
    file.save(path)?;
    eprintln!("Removed profile {name} from {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------- helpers

fn parse_raw<T: DeserializeOwned>(raw: &RawValue) -> Result<T> {
    serde_json::from_str(raw.get())
        .map_err(|e| Failure::Server(format!("an answer is not what the API documents: {e}")))
}

/// Every row of a cursor-paged list (`limit`/`cursor`, the next cursor in `X-Next-Cursor`), up
/// to `paging.limit`, each as the API sent it.
fn cursor_list(
    c: &Client,
    path: &str,
    params: &[(&str, Option<String>)],
    paging: Paging,
) -> Result<Vec<Box<RawValue>>> {
    let mut rows: Vec<Box<RawValue>> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = paging.limit.map(|l| l - rows.len() as u64);
        let size = paging
            .page_size
            .unwrap_or(100)
            .min(want.unwrap_or(u64::MAX))
            .min(1000);
        let mut q: Vec<(&str, Option<String>)> = params.to_vec();
        q.push(("limit", Some(size.to_string())));
        q.push(("cursor", cursor.clone()));
        let a = c.get(&format!("{path}{}", query(&q)))?;
        let page: Vec<Box<RawValue>> = parse_raw(&a.data)?;
        let empty = page.is_empty();
        rows.extend(page);
        if let Some(l) = paging.limit {
            if rows.len() as u64 >= l {
                rows.truncate(l as usize);
                break;
            }
        }
        match a.next_cursor {
            Some(next) if !empty => cursor = Some(next),
            _ => break,
        }
    }
    Ok(rows)
}

/// A list: `--json` prints its rows as one JSON array (each row unchanged), else `human`.
fn show_list<T: DeserializeOwned>(
    ctx: &Ctx,
    rows: &[Box<RawValue>],
    human: impl FnOnce(Vec<T>),
) -> Result<()> {
    if ctx.json {
        let parts: Vec<&str> = rows.iter().map(|r| r.get()).collect();
        println!("[{}]", parts.join(","));
        return Ok(());
    }
    let typed = rows
        .iter()
        .map(|r| parse_raw(r))
        .collect::<Result<Vec<T>>>()?;
    human(typed);
    Ok(())
}

fn print_table(t: &Table, empty: &str) {
    if t.is_empty() {
        eprintln!("{empty}");
    } else {
        t.print();
    }
}

/// A deletion's or a write's `true`: said in words.
fn done(ctx: &Ctx, a: &Answer, what: String) -> Result<()> {
    ctx.show(a, || {
        println!("{}", crate::table::clean(&what));
        Ok(())
    })
}

/// A call that a retry would repeat (a tenant, a key issued or rotated): sent with a fresh
/// `Idempotency-Key`, and once more with the same key when the answer was lost (the network
/// failed, or a 5xx that may hide a committed write), so the retry gets what the first attempt
/// did instead of doing it twice.
fn once<B: Serialize>(c: &Client, method: &str, path: &str, body: &B) -> Result<Answer> {
    let headers = [("Idempotency-Key", crate::client::idempotency_key())];
    match c.api(method, path, Some(body), &headers) {
        Err(Failure::Network(_) | Failure::Server(_)) => {
            std::thread::sleep(std::time::Duration::from_secs(1));
            c.api(method, path, Some(body), &headers)
        }
        other => other,
    }
}

/// A new key's one showing: its token alone on a stdout line (with `-q` the only line), the
/// warning on stderr. With `--json`, the API's data as it is (it carries the token).
fn show_new_token(ctx: &Ctx, a: &Answer, token: &str, record: &[(&str, String)], quiet: bool) {
    if ctx.json {
        println!("{}", a.data.get());
    } else {
        if !quiet {
            print!("{}", fields(record));
        }
        println!("{token}");
    }
    let _ = std::io::stdout().flush();
    eprintln!("keyward: the token is shown this once; store it now, it cannot be shown again");
}

fn role(r: RoleArg) -> Role {
    match r {
        RoleArg::Owner => Role::Owner,
        RoleArg::Admin => Role::Admin,
        RoleArg::Member => Role::Member,
    }
}

fn key_status(s: KeyStatusArg) -> String {
    match s {
        KeyStatusArg::Enabled => "enabled",
        KeyStatusArg::Disabled => "disabled",
    }
    .to_owned()
}

fn policy(p: PolicyArg) -> String {
    match p {
        PolicyArg::Reject => "reject",
        PolicyArg::UseAnyway => "use_anyway",
    }
    .to_owned()
}

fn period(p: PeriodArg) -> String {
    match p {
        PeriodArg::Day => "day",
        PeriodArg::Week => "week",
        PeriodArg::Month => "month",
        PeriodArg::Total => "total",
    }
    .to_owned()
}

// ---------------------------------------------------------------- admin

fn admin(ctx: &Ctx, a: Admin) -> Result<()> {
    let c = ctx.admin()?;
    match a {
        Admin::Tenants(t) => tenants(ctx, &c, t),
        Admin::Users(u) => users(ctx, &c, u),
        Admin::Keys(k) => user_keys(ctx, &c, k),
        Admin::Settings(s) => settings(ctx, &c, s),
        Admin::Audit(args) => audit(ctx, &c, args),
    }
}

fn tenant_table(ts: &[TenantView]) -> Table {
    let mut t = Table::new(&["ID", "NAME", "CREATED"]);
    for x in ts {
        t.row(vec![x.id.clone(), x.name.clone(), x.create_date.clone()]);
    }
    t
}

fn tenants(ctx: &Ctx, c: &Client, t: Tenants) -> Result<()> {
    match t {
        Tenants::List(paging) => {
            let rows = cursor_list(c, "/api/v1/admin/tenants", &[], paging)?;
            show_list(ctx, &rows, |ts: Vec<TenantView>| {
                print_table(&tenant_table(&ts), "no tenants")
            })
        }
        Tenants::Create { name } => {
            let a = once(c, "POST", "/api/v1/admin/tenants", &CreateTenant { name })?;
            ctx.show(&a, || {
                tenant_table(&[a.parse()?]).print();
                Ok(())
            })
        }
        Tenants::Get { id } => {
            let a = c.get(&format!("/api/v1/admin/tenants/{}", seg(&id)))?;
            ctx.show(&a, || {
                tenant_table(&[a.parse()?]).print();
                Ok(())
            })
        }
        Tenants::Delete { id } => {
            let a = c.api::<()>(
                "DELETE",
                &format!("/api/v1/admin/tenants/{}", seg(&id)),
                None,
                &[],
            )?;
            done(ctx, &a, format!("deleted tenant {id}"))
        }
    }
}

fn user_table(us: &[UserView]) -> Table {
    let mut t = Table::new(&["USERNAME", "TENANT", "ROLE", "STATUS", "CREATED"]);
    for u in us {
        t.row(vec![
            u.username.clone(),
            u.tenant_id.clone(),
            u.role.as_str().into(),
            u.status.as_str().into(),
            u.create_date.clone(),
        ]);
    }
    t
}

fn users(ctx: &Ctx, c: &Client, u: Users) -> Result<()> {
    let one = |a: &Answer| {
        ctx.show(a, || {
            user_table(&[a.parse()?]).print();
            Ok(())
        })
    };
    match u {
        Users::List(paging) => {
            let rows = cursor_list(c, "/api/v1/admin/users", &[], paging)?;
            show_list(ctx, &rows, |us: Vec<UserView>| {
                print_table(&user_table(&us), "no users")
            })
        }
        Users::Create {
            username,
            tenant_id,
            role: r,
        } => {
            let body = CreateUser {
                username,
                tenant_id,
                role: r.map(role),
            };
            one(&c.api("POST", "/api/v1/admin/users", Some(&body), &[])?)
        }
        Users::Get { username } => one(&c.get(&format!("/api/v1/admin/users/{}", seg(&username)))?),
        Users::Update {
            username,
            role: r,
            status,
        } => {
            if r.is_none() && status.is_none() {
                return Err(Failure::BadInput("give --role or --status".into()));
            }
            let body = PatchUser {
                role: r.map(role),
                status: status.map(|s| match s {
                    StatusArg::Active => UserStatus::Active,
                    StatusArg::Disabled => UserStatus::Disabled,
                }),
            };
            one(&c.api(
                "PATCH",
                &format!("/api/v1/admin/users/{}", seg(&username)),
                Some(&body),
                &[],
            )?)
        }
        Users::Delete { username } => {
            let a = c.api::<()>(
                "DELETE",
                &format!("/api/v1/admin/users/{}", seg(&username)),
                None,
                &[],
            )?;
            done(ctx, &a, format!("deleted user {username}"))
        }
    }
}

fn key_table(ks: &[KeyView]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "ACCESS_KEY",
        "SECRET",
        "DESCRIPTION",
        "EXPIRES",
        "LAST_USED",
    ]);
    for k in ks {
        t.row(vec![
            k.id.clone(),
            k.access_key.clone(),
            k.secret_hint.clone(),
            k.description.clone(),
            opt(&k.expires_at),
            opt(&k.last_used_at),
        ]);
    }
    t
}

fn created_record(k: &CreatedKey) -> Vec<(&'static str, String)> {
    vec![
        ("id", k.id.clone()),
        ("access_key", k.access_key.clone()),
        ("description", k.description.clone()),
        ("tenant_id", k.tenant_id.clone()),
        ("expires_at", opt(&k.expires_at)),
    ]
}

fn new_key_body(k: &NewKey) -> CreateKey {
    CreateKey {
        description: k.description.clone(),
        ttl_minutes: k.ttl_minutes,
    }
}

fn user_keys(ctx: &Ctx, c: &Client, k: UserKeys) -> Result<()> {
    match k {
        UserKeys::List { username, paging } => {
            let rows = cursor_list(
                c,
                &format!("/api/v1/admin/users/{}/api_key", seg(&username)),
                &[],
                paging,
            )?;
            show_list(ctx, &rows, |ks: Vec<KeyView>| {
                print_table(&key_table(&ks), "no keys")
            })
        }
        UserKeys::Create { username, key } => {
            let path = format!("/api/v1/admin/users/{}/api_key", seg(&username));
            let a = once(c, "POST", &path, &new_key_body(&key))?;
            let k: CreatedKey = a.parse()?;
            show_new_token(ctx, &a, &k.token, &created_record(&k), key.quiet);
            Ok(())
        }
        UserKeys::Delete { username, id } => {
            let path = format!(
                "/api/v1/admin/users/{}/api_key/{}",
                seg(&username),
                seg(&id)
            );
            let a = c.api::<()>("DELETE", &path, None, &[])?;
            done(ctx, &a, format!("revoked key {id} of {username}"))
        }
    }
}

fn settings_record(s: &SettingsView) -> String {
    fields(&[
        (
            "auth_token_max_ttl_minutes",
            s.auth_token_max_ttl_minutes.to_string(),
        ),
        ("self_service_keys", s.self_service_keys.to_string()),
        ("max_keys_per_user", s.max_keys_per_user.to_string()),
        (
            "max_ai_keys_per_tenant",
            s.max_ai_keys_per_tenant.to_string(),
        ),
        (
            "max_connections_per_tenant",
            s.max_connections_per_tenant.to_string(),
        ),
    ])
}

fn settings(ctx: &Ctx, c: &Client, s: Settings) -> Result<()> {
    let a = match s {
        Settings::Get => c.get("/api/v1/admin/settings")?,
        Settings::Set {
            max_ttl_minutes,
            self_service_keys,
            max_keys_per_user,
            max_ai_keys_per_tenant,
            max_connections_per_tenant,
        } => {
            let body = PutSettings {
                auth_token_max_ttl_minutes: max_ttl_minutes,
                self_service_keys,
                max_keys_per_user,
                max_ai_keys_per_tenant,
                max_connections_per_tenant,
            };
            if body.auth_token_max_ttl_minutes.is_none()
                && body.self_service_keys.is_none()
                && body.max_keys_per_user.is_none()
                && body.max_ai_keys_per_tenant.is_none()
                && body.max_connections_per_tenant.is_none()
            {
                return Err(Failure::BadInput(
                    "give at least one of --max-ttl-minutes, --self-service-keys, --max-keys-per-user, --max-ai-keys-per-tenant, --max-connections-per-tenant".into(),
                ));
            }
            c.api("PUT", "/api/v1/admin/settings", Some(&body), &[])?
        }
    };
    ctx.show(&a, || {
        print!("{}", settings_record(&a.parse()?));
        Ok(())
    })
}

fn audit(ctx: &Ctx, c: &Client, args: AuditArgs) -> Result<()> {
    let params = [("tenant_id", args.tenant_id), ("since", args.since)];
    let rows = cursor_list(c, "/api/v1/admin/audit", &params, args.paging)?;
    show_list(ctx, &rows, |es: Vec<AuditEntryView>| {
        let mut t = Table::new(&["AT", "ACTOR", "ACTION", "TARGET", "TENANT", "DETAIL"]);
        for e in es {
            let actor = match (e.actor_kind.as_ref(), &e.actor) {
                ("admin", _) => "(admin token)".to_owned(),
                (_, Some(a)) => a.to_string(),
                (kind, None) => format!("({kind})"),
            };
            t.row(vec![
                e.at,
                actor,
                e.action.into_owned(),
                e.target.into_owned(),
                opt(&e.tenant_id),
                e.detail.into_owned(),
            ]);
        }
        print_table(&t, "no audit entries");
    })
}

// ---------------------------------------------------------------- self-service

fn me(ctx: &Ctx) -> Result<()> {
    let a = ctx.user()?.get("/api/v1/me")?;
    ctx.show(&a, || {
        let m: MeView = a.parse()?;
        print!(
            "{}",
            fields(&[
                ("username", m.username.into_owned()),
                ("tenant_id", m.tenant_id.into_owned()),
                ("role", m.role.as_str().into()),
                ("key_id", m.api_key.id.into_owned()),
                ("access_key", m.api_key.access_key.into_owned()),
                ("expires_at", opt(&m.api_key.expires_at)),
            ])
        );
        Ok(())
    })
}

fn keys(ctx: &Ctx, k: Keys) -> Result<()> {
    let c = ctx.user()?;
    match k {
        Keys::Create(key) => {
            let a = once(&c, "POST", "/api/v1/api_keys", &new_key_body(&key))?;
            let k: CreatedKey = a.parse()?;
            show_new_token(ctx, &a, &k.token, &created_record(&k), key.quiet);
            Ok(())
        }
        Keys::List(paging) => {
            let rows = cursor_list(&c, "/api/v1/api_keys", &[], paging)?;
            show_list(ctx, &rows, |ks: Vec<KeyView>| {
                print_table(&key_table(&ks), "no keys")
            })
        }
        Keys::Rotate {
            id,
            grace_minutes,
            quiet,
        } => {
            let path = format!("/api/v1/api_keys/{}/rotate", seg(&id));
            let a = once(&c, "POST", &path, &Rotate { grace_minutes })?;
            let k: RotatedKey = a.parse()?;
            let record = [
                ("id", k.id.clone()),
                ("access_key", k.access_key.clone()),
                ("expires_at", opt(&k.expires_at)),
                (
                    "previous_secret_valid_until",
                    opt(&k.previous_secret_valid_until),
                ),
            ];
            show_new_token(ctx, &a, &k.token, &record, quiet);
            Ok(())
        }
        Keys::Delete { id } => {
            let a = c.api::<()>(
                "DELETE",
                &format!("/api/v1/api_keys/{}", seg(&id)),
                None,
                &[],
            )?;
            done(ctx, &a, format!("revoked key {id}"))
        }
        Keys::Limits => {
            let a = c.get("/api/v1/me/limits")?;
            ctx.show(&a, || {
                let l: KeyLimits = a.parse()?;
                print!(
                    "{}",
                    fields(&[
                        ("max_ttl_minutes", opt(&l.max_ttl_minutes)),
                        ("admin_max_ttl_minutes", l.admin_max_ttl_minutes.to_string()),
                        ("self_service_keys", l.self_service_keys.to_string()),
                        ("max_keys_per_user", l.max_keys_per_user.to_string()),
                        ("active_keys", l.active_keys.to_string()),
                    ])
                );
                Ok(())
            })
        }
    }
}

// ---------------------------------------------------------------- models

fn models(ctx: &Ctx, m: Models) -> Result<()> {
    let c = ctx.user()?;
    match m {
        Models::Catalog { factory } => {
            let a = c.get("/api/v1/factories")?;
            let all: Vec<FactoryView> = a.parse()?;
            match factory {
                None => ctx.show(&a, || {
                    let mut t = Table::new(&["FACTORY", "AUTH", "CONNECTION", "TYPES", "MODELS"]);
                    for f in &all {
                        let types: Vec<&str> = f.model_types.iter().map(|t| t.as_str()).collect();
                        t.row(vec![
                            f.name.to_string(),
                            f.auth.as_str().into(),
                            f.connection.as_str().into(),
                            types.join(","),
                            f.models.len().to_string(),
                        ]);
                    }
                    t.print();
                    Ok(())
                }),
                Some(name) => {
                    let f = all.iter().find(|f| f.name == name).ok_or_else(|| {
                        Failure::NotFound(format!("no factory named {name} in the catalog"))
                    })?;
                    if ctx.json {
                        // The one factory's entry, as the API wrote it.
                        let raw: Vec<Box<RawValue>> = a.parse()?;
                        let i = all.iter().position(|x| x.name == name).unwrap_or(0);
                        println!("{}", raw[i].get());
                        return Ok(());
                    }
                    let mut t = Table::new(&["MODEL", "TYPE", "MAX_TOKENS", "ENABLED"]);
                    for m in &f.models {
                        t.row(vec![
                            m.name.to_string(),
                            m.model_type.as_str().into(),
                            m.max_tokens.to_string(),
                            opt(&m.enabled),
                        ]);
                    }
                    print_table(
                        &t,
                        &format!(
                            "{name} has no catalog models: name one with --llm-name when adding it"
                        ),
                    );
                    Ok(())
                }
            }
        }
        Models::Add(args) => add_model(ctx, &c, *args),
        Models::List { details } => {
            let path = if details {
                "/api/v1/models?include_details=true"
            } else {
                "/api/v1/models"
            };
            let a = c.get(path)?;
            ctx.show(&a, || {
                let by: BTreeMap<String, FactoryModels> = a.parse()?;
                let mut head = vec!["FACTORY", "MODEL", "TYPE", "USED_TOKENS"];
                if details {
                    head.extend(["STATUS", "KEY", "API_BASE"]);
                }
                let mut t = Table::new(&head);
                for (factory, f) in &by {
                    for m in &f.llm {
                        let mut row = vec![
                            factory.clone(),
                            m.name.to_string(),
                            m.model_type.as_str().into(),
                            m.used_token.to_string(),
                        ];
                        if details {
                            row.push(opt(&m.status.map(|s| s.as_str())));
                            row.push(opt(&m.credential_hint.clone().flatten()));
                            row.push(opt(&m.api_base.clone().flatten()));
                        }
                        t.row(row);
                    }
                }
                print_table(&t, "no models");
                Ok(())
            })
        }
        Models::Remove { factory, llm_name } => {
            let body = RemoveModel {
                llm_factory: factory.clone(),
                llm_name: llm_name.clone(),
            };
            let a = c.api("DELETE", "/api/v1/models", Some(&body), &[])?;
            let what = match llm_name {
                Some(n) => format!("removed {n}@{factory}"),
                None => format!("removed every connection to {factory}"),
            };
            done(ctx, &a, what)
        }
    }
}

fn add_model(ctx: &Ctx, c: &Client, args: AddModelArgs) -> Result<()> {
    // Without a flag naming the credential, the catalog says whether the factory needs one, so
    // only then is it asked for.
    let auth = if args.api_key_file.is_none() && args.credentials_file.is_none() {
        let all: Vec<FactoryView> = c.get("/api/v1/factories")?.parse()?;
        all.iter().find(|f| f.name == args.factory).map(|f| f.auth)
    } else {
        None
    };
    let api_key = match (&args.api_key_file, auth) {
        (Some(f), _) => Some(secret::read_one(
            &Source::from_flag(Some(f)),
            "provider key",
        )?),
        (
            None,
            Some(
                FactoryAuth::Bearer
                | FactoryAuth::Azure
                | FactoryAuth::GoogleApiKey
                | FactoryAuth::Anthropic,
            ),
        ) => Some(secret::read_one(&Source::from_flag(None), "provider key")?),
        _ => None,
    };
    let credentials_json = match (&args.credentials_file, auth) {
        (Some(f), _) => Some(credentials(&secret::read_text(f)?)?),
        (None, Some(FactoryAuth::ServiceAccount)) => match Source::from_flag(None) {
            Source::Stdin => Some(credentials(&secret::read_stdin()?)?),
            _ => {
                return Err(Failure::BadInput(
                    "VertexAI needs its service-account JSON: give --credentials-file PATH (or - for standard input)".into(),
                ))
            }
        },
        _ => None,
    };
    let auth_token = args
        .auth_token_file
        .as_deref()
        .map(|f| secret::read_one(&Source::from_flag(Some(f)), "auth token"))
        .transpose()?;
    let body = AddModel {
        llm_factory: args.factory.clone(),
        api_key,
        base_url: args.base_url,
        llm_name: args.llm_name,
        model_type: args.model_type,
        max_tokens: args.max_tokens,
        verify: args.no_verify.then_some(false),
        auth_token,
        deployment: args.deployment,
        endpoint: args.endpoint,
        api_version: args.api_version,
        credentials_json,
        project_id: args.project_id,
        location: args.location,
    };
    let a = c.api("POST", "/api/v1/models", Some(&body), &[])?;
    done(ctx, &a, format!("connected {}", args.factory))
}

/// A service-account file as the JSON object it holds (never echoed when it is not JSON).
fn credentials(text: &str) -> Result<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| Failure::BadInput("the credentials file is not a JSON object".into()))
}

// ---------------------------------------------------------------- defaults

fn defaults(ctx: &Ctx, d: Defaults) -> Result<()> {
    let c = ctx.user()?;
    let body = match d {
        Defaults::Get => {
            let a = c.get("/api/v1/models/default")?;
            return ctx.show(&a, || print_defaults(&a.parse()?));
        }
        Defaults::Set(ids) => {
            let set = |v: Option<String>| v.map(Some);
            let body = SetDefaults {
                llm_id: set(ids.chat),
                embd_id: set(ids.embedding),
                asr_id: set(ids.speech2text),
                img2txt_id: set(ids.image2text),
                rerank_id: set(ids.rerank),
                tts_id: set(ids.tts),
            };
            if serde_json::to_value(&body)
                .map_or(true, |v| v.as_object().is_some_and(|o| o.is_empty()))
            {
                return Err(Failure::BadInput(
                    "name at least one default: --chat, --embedding, --speech2text, --image2text, --rerank, --tts".into(),
                ));
            }
            body
        }
        Defaults::Clear {
            chat,
            embedding,
            speech2text,
            image2text,
            rerank,
            tts,
            all,
        } => {
            let clear = |b: bool| (b || all).then_some(None);
            if !(chat || embedding || speech2text || image2text || rerank || tts || all) {
                return Err(Failure::BadInput(
                    "name the defaults to clear (--chat, --embedding, ...) or --all".into(),
                ));
            }
            SetDefaults {
                llm_id: clear(chat),
                embd_id: clear(embedding),
                asr_id: clear(speech2text),
                img2txt_id: clear(image2text),
                rerank_id: clear(rerank),
                tts_id: clear(tts),
            }
        }
    };
    let a = c.api("POST", "/api/v1/models/default", Some(&body), &[])?;
    if ctx.json {
        println!("{}", a.data.get());
        return Ok(());
    }
    print_defaults(&c.get("/api/v1/models/default")?.parse()?)
}

fn print_defaults(d: &DefaultModels) -> Result<()> {
    let mut t = Table::new(&["TYPE", "MODEL"]);
    for (kind, v) in [
        ("chat", &d.llm_id),
        ("embedding", &d.embd_id),
        ("speech2text", &d.asr_id),
        ("image2text", &d.img2txt_id),
        ("rerank", &d.rerank_id),
        ("tts", &d.tts_id),
    ] {
        t.row(vec![kind.into(), opt(v)]);
    }
    t.print();
    Ok(())
}

// ---------------------------------------------------------------- gateway keys

/// The provider keys named by `--api-key-file` flags (each file one key per line; `-` is
/// standard input, read once); with no flag, one key from the prompt, or every line of
/// standard input when it is not a terminal.
fn pool(files: &[String]) -> Result<Vec<String>> {
    if files.is_empty() {
        return match Source::from_flag(None) {
            Source::Prompt => Ok(vec![secret::read_one(&Source::Prompt, "provider key")?]),
            _ => secret::lines(&secret::read_stdin()?, "provider key"),
        };
    }
    if files.iter().filter(|f| *f == "-").count() > 1 {
        return Err(Failure::BadInput(
            "standard input (-) can be read only once".into(),
        ));
    }
    let mut keys = Vec::new();
    for f in files {
        keys.extend(secret::lines(&secret::read_text(f)?, "provider key")?);
    }
    Ok(keys)
}

fn ai_key_record(k: &AiKeyView) -> String {
    let pool: Vec<String> = k
        .pool
        .iter()
        .map(|m| format!("{}:{} ({} requests)", m.index, m.api_key_hint, m.requests))
        .collect();
    fields(&[
        ("id", k.id.clone()),
        ("alias", k.alias.clone()),
        ("provider", k.provider.clone()),
        ("model", k.model.clone()),
        ("status", k.status.as_str().into()),
        ("api_key_hint", k.api_key_hint.clone()),
        ("pool", pool.join(", ")),
        (
            "last_served_by",
            opt(&k.last_served_by.as_ref().map(|m| m.index)),
        ),
        ("endpoint_host", opt(&k.endpoint_host)),
        ("input_limit", k.input_limit.to_string()),
        ("output_limit", k.output_limit.to_string()),
        ("usage_limit_policy", k.usage_limit_policy.as_str().into()),
        ("expire_time", opt(&k.expire_time)),
        ("used_input_tokens", k.used_input_tokens.to_string()),
        ("used_output_tokens", k.used_output_tokens.to_string()),
        ("last_used_at", opt(&k.last_used_at)),
        ("create_date", k.create_date.clone()),
        ("update_date", k.update_date.clone()),
    ])
}

/// `{total, items}` with each item as the API sent it.
#[derive(Deserialize)]
struct RawPage {
    total: i64,
    items: Vec<Box<RawValue>>,
}

/// Gateway keys: one page as asked, or every page up to `limit`. Returns the JSON to print
/// (the API's `data` itself when one request was enough) and the rows.
fn ai_key_pages(
    c: &Client,
    filters: &[(&str, Option<String>)],
    page: Option<u64>,
    limit: Option<u64>,
    page_size: Option<u64>,
) -> Result<(String, Vec<AiKeyView>)> {
    let size = page_size
        .unwrap_or(100)
        .min(limit.unwrap_or(u64::MAX))
        .min(100);
    let fetch = |n: u64| -> Result<Answer> {
        let mut q: Vec<(&str, Option<String>)> = filters.to_vec();
        q.push(("page", Some(n.to_string())));
        q.push(("page_size", Some(size.to_string())));
        c.get(&format!("/api/v1/ai_keys{}", query(&q)))
    };
    let first = fetch(page.unwrap_or(1))?;
    let p: RawPage = first.parse()?;
    let (total, mut items) = (p.total, p.items);
    let mut pages = 1;
    if page.is_none() {
        let mut n = 1;
        while (items.len() as i64) < total && limit.is_none_or(|l| (items.len() as u64) < l) {
            n += 1;
            let more: RawPage = fetch(n)?.parse()?;
            if more.items.is_empty() {
                break;
            }
            items.extend(more.items);
            pages += 1;
        }
    }
    if let Some(l) = limit {
        items.truncate(l as usize);
    }
    let json = if pages == 1 && limit.is_none_or(|l| l as i64 >= total) {
        first.data.get().to_owned()
    } else {
        let parts: Vec<&str> = items.iter().map(|r| r.get()).collect();
        format!("{{\"total\":{total},\"items\":[{}]}}", parts.join(","))
    };
    let typed = items
        .iter()
        .map(|r| parse_raw(r))
        .collect::<Result<Vec<AiKeyView>>>()?;
    Ok((json, typed))
}

fn ai_keys(ctx: &Ctx, k: AiKeys) -> Result<()> {
    let c = ctx.user()?;
    let one = |a: &Answer| {
        ctx.show(a, || {
            print!("{}", ai_key_record(&a.parse()?));
            Ok(())
        })
    };
    match k {
        AiKeys::Create {
            alias,
            provider,
            model,
            api_key_file,
            input_limit,
            output_limit,
            policy: p,
            over_time,
            status,
            expire_time,
        } => {
            let mut keys = pool(&api_key_file)?;
            let (api_key, api_keys) = if keys.len() == 1 {
                (keys.pop(), None)
            } else {
                (None, Some(keys))
            };
            let body = CreateAiKey {
                alias,
                provider,
                model,
                api_key,
                api_keys,
                input_limit,
                output_limit,
                usage_limit_policy: p.map(policy),
                rpm_limit: over_time.rpm_limit,
                tpm_limit: over_time.tpm_limit,
                token_budget: over_time.token_budget,
                budget_period: over_time.budget_period.map(period),
                status: status.map(key_status),
                expire_time,
            };
            one(&c.api("POST", "/api/v1/ai_keys", Some(&body), &[])?)
        }
        AiKeys::List {
            search,
            provider,
            status,
            page,
            limit,
            page_size,
        } => {
            let filters = [
                ("search", search),
                ("provider", provider),
                ("status", status.map(key_status)),
            ];
            let (json, rows) = ai_key_pages(&c, &filters, page, limit, page_size)?;
            if ctx.json {
                println!("{json}");
                return Ok(());
            }
            let mut t = Table::new(&[
                "ID", "ALIAS", "PROVIDER", "MODEL", "STATUS", "KEY", "LIMITS", "EXPIRES",
            ]);
            for k in rows {
                t.row(vec![
                    k.id,
                    k.alias,
                    k.provider,
                    k.model,
                    k.status.as_str().into(),
                    k.api_key_hint,
                    format!(
                        "{}/{} {}",
                        k.input_limit,
                        k.output_limit,
                        k.usage_limit_policy.as_str()
                    ),
                    opt(&k.expire_time),
                ]);
            }
            print_table(&t, "no gateway keys");
            Ok(())
        }
        AiKeys::Get { id } => one(&c.get(&format!("/api/v1/ai_keys/{}", seg(&id)))?),
        AiKeys::Update {
            id,
            alias,
            provider,
            model,
            api_key_file,
            input_limit,
            output_limit,
            policy: p,
            over_time,
            status,
            expire_time,
            no_expiry,
        } => {
            let some = |v: Option<String>| v.map(Some);
            let (api_key, api_keys) = if api_key_file.is_empty() {
                (None, None)
            } else {
                let mut keys = pool(&api_key_file)?;
                if keys.len() == 1 {
                    (keys.pop().map(Some), None)
                } else {
                    (None, Some(Some(keys)))
                }
            };
            let body = UpdateAiKey {
                alias: some(alias),
                provider: some(provider),
                model: some(model),
                api_key,
                api_keys,
                input_limit: input_limit.map(Some),
                output_limit: output_limit.map(Some),
                usage_limit_policy: some(p.map(policy)),
                rpm_limit: over_time.rpm_limit.map(Some),
                tpm_limit: over_time.tpm_limit.map(Some),
                token_budget: over_time.token_budget.map(Some),
                budget_period: some(over_time.budget_period.map(period)),
                status: some(status.map(key_status)),
                expire_time: if no_expiry {
                    Some(None)
                } else {
                    some(expire_time)
                },
            };
            if serde_json::to_value(&body)
                .map_or(true, |v| v.as_object().is_some_and(|o| o.is_empty()))
            {
                return Err(Failure::BadInput(
                    "nothing to change: give at least one flag".into(),
                ));
            }
            one(&c.api(
                "PUT",
                &format!("/api/v1/ai_keys/{}", seg(&id)),
                Some(&body),
                &[],
            )?)
        }
        AiKeys::Delete { id } => {
            let a = c.api::<()>(
                "DELETE",
                &format!("/api/v1/ai_keys/{}", seg(&id)),
                None,
                &[],
            )?;
            done(ctx, &a, format!("deleted gateway key {id}"))
        }
    }
}

// ---------------------------------------------------------------- usage

fn webhook_record(w: &WebhookView) -> Vec<(&'static str, String)> {
    vec![
        ("url", w.url.clone()),
        ("secret_hint", w.secret_hint.clone()),
        ("create_date", w.create_date.clone()),
        ("update_date", w.update_date.clone()),
    ]
}

fn webhook(ctx: &Ctx, w: Webhook) -> Result<()> {
    let c = ctx.user()?;
    const PATH: &str = "/api/v1/tenant/webhook";
    match w {
        Webhook::Get => {
            let a = c.get(PATH)?;
            ctx.show(&a, || {
                print!("{}", fields(&webhook_record(&a.parse()?)));
                Ok(())
            })
        }
        Webhook::Set {
            webhook_url: url,
            secret_file,
            new_secret,
        } => {
            let secret = secret_file
                .as_deref()
                .map(|p| secret::read_one(&Source::from_flag(Some(p)), "webhook secret"))
                .transpose()?;
            let body = PutWebhook {
                url,
                secret,
                new_secret: new_secret.then_some(true),
            };
            let a = c.api("PUT", PATH, Some(&body), &[])?;
            let v: WebhookView = a.parse()?;
            match &v.secret {
                Some(generated) => {
                    if ctx.json {
                        println!("{}", a.data.get());
                    } else {
                        print!("{}", fields(&webhook_record(&v)));
                        println!("{generated}");
                    }
                    let _ = std::io::stdout().flush();
                    eprintln!(
                        "keyward: the signing secret is shown this once; put it in your receiver now"
                    );
                    Ok(())
                }
                None => ctx.show(&a, || {
                    print!("{}", fields(&webhook_record(&v)));
                    Ok(())
                }),
            }
        }
        Webhook::Test => {
            let a = c.api::<()>("POST", &format!("{PATH}/test"), None, &[])?;
            let t: TestDelivery = a.parse()?;
            ctx.show(&a, || {
                let status = t.status.map_or("-".into(), |s| s.to_string());
                print!(
                    "{}",
                    fields(&[
                        ("delivered", t.delivered.to_string()),
                        ("status", status),
                        ("error", t.error.clone().unwrap_or_default()),
                    ])
                );
                Ok(())
            })?;
            if t.delivered {
                Ok(())
            } else {
                Err(Failure::Network(format!(
                    "the test event was not delivered: {}",
                    t.error.unwrap_or_default()
                )))
            }
        }
        Webhook::Delete => {
            let a = c.api::<()>("DELETE", PATH, None, &[])?;
            ctx.show(&a, || {
                println!("webhook removed");
                Ok(())
            })
        }
    }
}

fn usage(ctx: &Ctx, u: Usage) -> Result<()> {
    let c = ctx.user()?;
    match u {
        Usage::Models => {
            let a = c.get("/api/v1/models")?;
            ctx.show(&a, || {
                let by: BTreeMap<String, FactoryModels> = a.parse()?;
                let mut t = Table::new(&["FACTORY", "MODEL", "TYPE", "USED_TOKENS"]);
                for (factory, f) in &by {
                    for m in &f.llm {
                        t.row(vec![
                            factory.clone(),
                            m.name.to_string(),
                            m.model_type.as_str().into(),
                            m.used_token.to_string(),
                        ]);
                    }
                }
                print_table(&t, "no models");
                Ok(())
            })
        }
        Usage::AiKeys => {
            let (json, rows) = ai_key_pages(&c, &[], None, None, None)?;
            if ctx.json {
                println!("{json}");
                return Ok(());
            }
            let mut t = Table::new(&[
                "ALIAS",
                "PROVIDER",
                "MODEL",
                "INPUT_TOKENS",
                "OUTPUT_TOKENS",
                "LAST_USED",
            ]);
            for k in rows {
                t.row(vec![
                    k.alias,
                    k.provider,
                    k.model,
                    k.used_input_tokens.to_string(),
                    k.used_output_tokens.to_string(),
                    opt(&k.last_used_at),
                ]);
            }
            print_table(&t, "no gateway keys");
            Ok(())
        }
        Usage::History {
            ai_key_id,
            model,
            granularity,
            from,
            to,
        } => {
            let path = match &ai_key_id {
                Some(id) => format!("/api/v1/ai_keys/{}/usage", seg(id)),
                None => "/api/v1/usage".to_owned(),
            };
            let granularity = granularity.map(|g| match g {
                GranularityArg::Hour => "hour".to_owned(),
                GranularityArg::Day => "day".to_owned(),
            });
            // Every page of the range, oldest bucket first, as one list.
            let mut items: Vec<UsagePoint> = Vec::new();
            let mut first: Option<UsagePage> = None;
            for n in 1u64.. {
                let q = [
                    ("granularity", granularity.clone()),
                    ("from", from.clone()),
                    ("to", to.clone()),
                    ("model", model.clone()),
                    ("page", Some(n.to_string())),
                    ("page_size", Some("1000".to_owned())),
                ];
                let mut p: UsagePage = c.get(&format!("{path}{}", query(&q)))?.parse()?;
                let got = p.items.len();
                items.append(&mut p.items);
                let total = p.total;
                first.get_or_insert(p);
                if got == 0 || items.len() as i64 >= total {
                    break;
                }
            }
            let mut page = first.unwrap_or(UsagePage {
                granularity: "hour".into(),
                from: String::new(),
                to: String::new(),
                total: 0,
                items: Vec::new(),
            });
            page.total = items.len() as i64;
            page.items = items;
            if ctx.json {
                println!(
                    "{}",
                    serde_json::to_string(&page).map_err(|e| Failure::Local(e.to_string()))?
                );
                return Ok(());
            }
            let mut t = Table::new(&[
                "START",
                "REQUESTS",
                "INPUT_TOKENS",
                "OUTPUT_TOKENS",
                "REJECTED",
            ]);
            for p in &page.items {
                t.row(vec![
                    p.start.clone(),
                    p.requests.to_string(),
                    p.input_tokens.to_string(),
                    p.output_tokens.to_string(),
                    p.rejected.to_string(),
                ]);
            }
            print_table(&t, "no usage in the range");
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- relay

fn relay(ctx: &Ctx, r: Relay) -> Result<()> {
    let c = ctx.user()?;
    match r {
        Relay::Models => {
            let text = crate::client::read_relay(c.send("GET", "/v1/models", None, &[])?)?;
            if ctx.json {
                println!("{text}");
                return Ok(());
            }
            let list: RelayModelList = serde_json::from_str(&text)
                .map_err(|e| Failure::Server(format!("the model list is not OpenAI's: {e}")))?;
            let mut t = Table::new(&["MODEL", "OWNED_BY"]);
            for m in list.data {
                t.row(vec![m.id, m.owned_by]);
            }
            print_table(&t, "no models");
            Ok(())
        }
        Relay::Chat {
            message,
            model,
            system,
            max_tokens,
            stream,
        } => {
            let text = match message {
                Some(m) => m,
                None => secret::read_stdin()?,
            };
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(json!({"role": "system", "content": s}));
            }
            messages.push(json!({"role": "user", "content": text}));
            let mut body = json!({
                "model": model.unwrap_or_else(|| "default".into()),
                "messages": messages,
            });
            if let Some(n) = max_tokens {
                body["max_tokens"] = json!(n);
            }
            if stream {
                body["stream"] = json!(true);
            }
            let resp = c.send("POST", "/v1/chat/completions", Some(&body.to_string()), &[])?;
            if stream && (200..300).contains(&resp.status()) {
                return relay_stream(ctx, resp);
            }
            let text = crate::client::read_relay(resp)?;
            if ctx.json {
                println!("{text}");
                return Ok(());
            }
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Failure::Server(format!("the completion is not JSON: {e}")))?;
            let reply = v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default();
            println!("{}", crate::table::clean_text(reply));
            Ok(())
        }
    }
}

/// A streamed completion: each delta's text as it arrives (with `--json`, each event's JSON on
/// its own line); an error event, or a stream that ends before `[DONE]`, is a server failure.
fn relay_stream(ctx: &Ctx, resp: ureq::Response) -> Result<()> {
    let reader = std::io::BufReader::new(resp.into_reader());
    let mut out = std::io::stdout();
    for line in reader.lines() {
        let line = line.map_err(|e| Failure::Network(format!("the stream was cut off: {e}")))?;
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        if data == "[DONE]" {
            if !ctx.json {
                println!();
            }
            return Ok(());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| Failure::Server(format!("a stream event is not JSON: {e}")))?;
        if let Some(err) = v.get("error") {
            if !ctx.json {
                println!();
            }
            return Err(Failure::Server(format!(
                "the stream failed: {}",
                err["message"].as_str().unwrap_or("no message")
            )));
        }
        if ctx.json {
            println!("{data}");
        } else if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            print!("{}", crate::table::clean_text(t));
            let _ = out.flush();
        }
    }
    Err(Failure::Server("the stream ended before [DONE]".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn request_bodies_leave_out_what_is_not_sent_and_send_null_only_to_clear() {
        // PutSettings refuses null: fields not given are left out.
        let s = PutSettings {
            auth_token_max_ttl_minutes: None,
            self_service_keys: Some(false),
            max_keys_per_user: None,
            max_ai_keys_per_tenant: None,
            max_connections_per_tenant: None,
        };
        assert_eq!(json(&s), r#"{"self_service_keys":false}"#);
        // Defaults: a cleared field is null, one not named is absent.
        let d = SetDefaults {
            llm_id: Some(None),
            embd_id: Some(Some("e@OpenAI".into())),
            asr_id: None,
            img2txt_id: None,
            rerank_id: None,
            tts_id: None,
        };
        assert_eq!(json(&d), r#"{"llm_id":null,"embd_id":"e@OpenAI"}"#);
        // A gateway key's update: only the flags given, `--no-expiry` as null.
        let u = UpdateAiKey {
            alias: None,
            provider: None,
            model: None,
            api_key: None,
            api_keys: None,
            input_limit: Some(Some(10)),
            output_limit: None,
            usage_limit_policy: None,
            rpm_limit: None,
            tpm_limit: Some(Some(5000)),
            token_budget: None,
            budget_period: None,
            status: None,
            expire_time: Some(None),
        };
        assert_eq!(
            json(&u),
            r#"{"input_limit":10,"tpm_limit":5000,"expire_time":null}"#
        );
        let k = CreateKey {
            description: None,
            ttl_minutes: None,
        };
        assert_eq!(json(&k), "{}");
    }

    /// Read one HTTP request's head and body from `s`; returns its header lines.
    fn read_request(s: &mut std::net::TcpStream) -> Vec<String> {
        use std::io::Read;
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).unwrap() == 0 {
                break;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let lines: Vec<String> = head.lines().map(str::to_owned).collect();
        let len = lines
            .iter()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        lines
    }

    fn idempotency_key_of(lines: &[String]) -> Option<String> {
        lines.iter().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("idempotency-key:")
                .then(|| l.split_once(':').unwrap().1.trim().to_owned())
        })
    }

    #[test]
    fn a_lost_answer_is_asked_again_with_the_same_idempotency_key() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            // The first attempt reaches the server, which "commits" and loses the answer.
            let (mut first, _) = listener.accept().unwrap();
            let k1 = idempotency_key_of(&read_request(&mut first));
            drop(first);
            let (mut second, _) = listener.accept().unwrap();
            let k2 = idempotency_key_of(&read_request(&mut second));
            let body = r#"{"code":0,"data":{"id":"t1"},"message":"success"}"#;
            write!(
                second,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            (k1, k2)
        });
        let c = Client::new(&base, Some("admin".into()));
        let a = once(
            &c,
            "POST",
            "/api/v1/admin/tenants",
            &CreateTenant { name: "t".into() },
        )
        .unwrap();
        assert_eq!(a.data.get(), r#"{"id":"t1"}"#);
        let (k1, k2) = server.join().unwrap();
        assert!(k1.as_deref().is_some_and(|k| k.len() == 32), "{k1:?}");
        assert_eq!(k1, k2, "the retry carries the first attempt's key");
    }

    #[test]
    fn the_worker_reads_back_what_the_client_writes() {
        // The Worker's own Deserialize (deny_unknown_fields, not_null, present) accepts each body.
        let body = CreateAiKey {
            alias: "a".into(),
            provider: "OpenAI".into(),
            model: "m".into(),
            api_key: None,
            api_keys: Some(vec!["sk-one-12345678".into(), "sk-two-12345678".into()]),
            input_limit: 0,
            output_limit: None,
            usage_limit_policy: Some("reject".into()),
            rpm_limit: Some(5),
            tpm_limit: None,
            token_budget: Some(100_000),
            budget_period: Some("month".into()),
            status: None,
            expire_time: None,
        };
        let back: CreateAiKey = serde_json::from_str(&json(&body)).unwrap();
        assert_eq!(back.api_keys.map(|k| k.len()), Some(2));
        let s: PutSettings = serde_json::from_str(&json(&PutSettings {
            auth_token_max_ttl_minutes: Some(60),
            self_service_keys: None,
            max_keys_per_user: None,
            max_ai_keys_per_tenant: None,
            max_connections_per_tenant: None,
        }))
        .unwrap();
        assert_eq!(s.auth_token_max_ttl_minutes, Some(60));
        let u: UpdateAiKey = serde_json::from_str(r#"{"expire_time":null}"#).unwrap();
        assert_eq!(u.expire_time, Some(None));
    }
}
