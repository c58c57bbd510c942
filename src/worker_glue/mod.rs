//! The Workers runtime side: entry points, and the ports over D1, KV, the clock and randomness.
//! Kept thin on purpose: everything it does not have to do lives in the natively tested core.

mod convert;
mod limiter;
mod outbound;
mod ports;

use crate::api::{App, Config};
use crate::domain::crypto::Keyring;
use crate::providers::address::{AddressPolicy, PublicHosts, POLICY_VAR};
use ports::{D1Db, WorkerPlatform};
use worker::{event, Context, Env, ScheduleContext, ScheduledEvent};

/// Bodies above this are not read at all; the core answers 413 from the declared length.
const READ_LIMIT: u64 = 1024 * 1024;

fn config(env: &Env) -> Config {
    let mut c = Config {
        admin_token: env
            .secret("ADMIN_TOKEN")
            .ok()
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty()),
        ..Config::default()
    };
    let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
    let secret = |name: &str| env.secret(name).ok().map(|v| v.to_string());
    if let Some(v) = var("AUTH_TOKEN_MAX_TTL_MINUTES").and_then(|v| v.parse().ok()) {
        c.default_max_ttl_minutes = v;
    }
    if let Some(v) = var("PROVIDER_TIMEOUT_MS").and_then(|v| v.parse().ok()) {
        c.provider_timeout_ms = v;
    }
    if let Some(v) = var("VERIFY_CACHE_SECONDS").and_then(|v| v.parse().ok()) {
        c.verify_cache_seconds = v;
    }
    c.stream_idle_timeout_ms =
        crate::api::stream_idle_timeout_ms(var("STREAM_IDLE_TIMEOUT_MS").as_deref());
    c.builtin_models = var("BUILTIN_MODELS").unwrap_or_default();
    // A malformed list fails closed: no private class allowed, no extra public host (the request's
    // own host is still refused).
    match AddressPolicy::parse(&var(POLICY_VAR).unwrap_or_default()) {
        Ok(p) => c.address_policy = p,
        Err(e) => log::error!("{e}; no private address class is allowed"),
    }
    match PublicHosts::parse(&var("KEYWARD_PUBLIC_HOSTS").unwrap_or_default()) {
        Ok(h) => c.public_hosts = h,
        Err(e) => log::error!("{e}; the list is ignored"),
    }
    if let Some(key) = secret("KEYWARD_ENCRYPTION_KEY") {
        let version = var("KEYWARD_ENCRYPTION_KEY_VERSION")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let older = secret("KEYWARD_ENCRYPTION_KEYS_OLDER").unwrap_or_default();
        match Keyring::from_config(&key, version, &older) {
            Ok(k) => c.keyring = Some(k),
            Err(e) => log::error!("provider credential encryption is off: {e}"),
        }
    }
    c
}

fn app(env: &Env) -> worker::Result<App<WorkerPlatform>> {
    ports::init_logging();
    Ok(App::new(WorkerPlatform::new(env)?, config(env)))
}

#[event(fetch)]
async fn fetch(req: worker::Request, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let app = app(&env)?;
    let core_req = convert::request(req, READ_LIMIT).await?;
    let mut resp = app.handle(core_req).await;
    let deferred = std::mem::take(&mut resp.deferred);
    let after_stream = resp.deferred_after_stream.take();
    if !deferred.is_empty() || after_stream.is_some() {
        let db = D1Db(env.d1("DB")?);
        ctx.wait_until(async move {
            let mut stmts = deferred;
            if let Some(rx) = after_stream {
                // Resolves when the streamed body has ended (or was abandoned by the client).
                stmts.extend(rx.await.unwrap_or_default());
            }
            if !stmts.is_empty() {
                if let Err(e) = crate::store::Db::batch(&db, stmts).await {
                    log::warn!("deferred write failed: {e}");
                }
            }
        });
    }
    convert::response(resp)
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    match app(&env) {
        Ok(app) => {
            if let Err(e) = app.purge().await {
                log::error!("purge failed: {e}");
            }
        }
        Err(e) => log::error!("purge could not start: {e}"),
    }
}
