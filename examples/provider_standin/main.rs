//! The model-provider stand-in as a process, for end-to-end runs:
//!
//! ```text
//! cargo run --example provider_standin -- --port 0 [--quiet] [--keep-alive] [--exit-on-stdin-eof]
//! ```
//!
//! Prints exactly one line, `LISTENING <port>`, on stdout, then serves on 127.0.0.1 until
//! killed (or, with `--exit-on-stdin-eof`, until its standard input closes). One line per
//! request goes to stderr unless `--quiet`. Every answer closes its connection unless
//! `--keep-alive` (the benchmark's). See `server.rs` for the routes.

#[cfg(not(target_arch = "wasm32"))]
mod server;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use std::io::Write;

    const USAGE: &str =
        "usage: provider_standin [--port N] [--quiet] [--keep-alive] [--exit-on-stdin-eof]";
    let mut port: u16 = 0;
    let mut quiet = false;
    let mut keep_alive = false;
    let mut exit_on_stdin_eof = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--port" => args.next(),
            a if a.starts_with("--port=") => Some(a["--port=".len()..].to_string()),
            "--quiet" => {
                quiet = true;
                continue;
            }
            "--keep-alive" => {
                keep_alive = true;
                continue;
            }
            "--exit-on-stdin-eof" => {
                exit_on_stdin_eof = true;
                continue;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("provider_standin: unknown argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        };
        port = match value.as_deref().map(str::parse) {
            Some(Ok(p)) => p,
            _ => {
                eprintln!("provider_standin: --port needs a number from 0 to 65535\n{USAGE}");
                std::process::exit(2);
            }
        };
    }

    let standin = server::StandIn::start_on(port);
    standin.set_log(!quiet);
    standin.set_keep_alive(keep_alive);
    {
        let mut out = std::io::stdout().lock();
        let printed = writeln!(out, "LISTENING {}", standin.port).and_then(|()| out.flush());
        if printed.is_err() {
            std::process::exit(1);
        }
    }

    if exit_on_stdin_eof {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        drop(standin);
        return;
    }
    loop {
        std::thread::park();
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
