//! The Workers runtime side: entry points, and the ports over D1, KV, the clock and randomness.
//! Kept thin on purpose: everything it does not have to do lives in the natively tested core.

mod convert;
mod limiter;
mod limits_object;
mod outbound;
mod per_object;
mod ports;

use crate::api::{replicas, App, Config};
use crate::env_config::{ConfigCache, EnvValues};
use crate::store::write_behind::{self, WriteBehind};
use crate::store::Platform;
use per_object::PerObject;
use ports::{D1Db, WorkerPlatform};
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use worker::{event, Context, Delay, Env, ScheduleContext, ScheduledEvent};

thread_local! {
    /// This isolate's parsed config; see [`crate::env_config`] for why it is keyed on the values.
    static CONFIG: ConfigCache = ConfigCache::default();
    /// What the last env object gave: its config and bindings (see [`Resolved`]).
    static RESOLVED: PerObject<Resolved> = const { PerObject::new() };
    /// This isolate's deferred writes, gathered into batches.
    static WRITES: Rc<WriteBehind> = Rc::new(WriteBehind::default());
}

/// The config and the bindings one env object yields. Reading them costs a property lookup and a
/// type check through the JS boundary for each of some two dozen names (about 0.1 ms of CPU per
/// request here); the runtime hands every request of an isolate the same env object, and a new
/// deployment's vars and secrets come in a new one (a new version runs in new isolates), so they
/// are read once per env object. Another env object reads them all again, and the config cache
/// then still compares the values themselves.
///
/// The D1 database and the rate limiter are kept as the JS objects they are (their workers-rs
/// types are not `Clone`), checked once when they were read.
struct Resolved {
    config: Config,
    replicated: bool,
    db: JsValue,
    kv: worker::kv::KvStore,
    limiter: Option<JsValue>,
    counters: limits_object::DoCounters,
}

impl Resolved {
    fn db(&self) -> worker::D1Database {
        self.db.clone().unchecked_into()
    }
}

fn resolve(env: &Env) -> worker::Result<Rc<Resolved>> {
    RESOLVED.with(|cache| {
        cache.get_or_try(env.as_ref(), || {
            let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
            let values = EnvValues::read(var, |name| env.secret(name).ok().map(|v| v.to_string()));
            Ok(Resolved {
                config: CONFIG.with(|cache| cache.get(values)),
                replicated: replicas::enabled(var(replicas::VAR).as_deref()),
                db: env.d1("DB")?.into(),
                kv: env.kv("CACHE")?,
                limiter: env.rate_limiter("AUTH_FAILURES").ok().map(Into::into),
                counters: limits_object::DoCounters::new(env),
            })
        })
    })
}

fn app(env: &Env, session_start: Option<&str>) -> worker::Result<App<WorkerPlatform>> {
    app_of(resolve(env)?.as_ref(), session_start)
}

fn app_of(r: &Resolved, session_start: Option<&str>) -> worker::Result<App<WorkerPlatform>> {
    ports::init_logging();
    let platform = WorkerPlatform::new(
        r.db(),
        r.kv.clone(),
        r.limiter.clone().map(JsCast::unchecked_into),
        r.counters.clone(),
        session_start,
    )?;
    Ok(App::new(platform, r.config.clone()))
}

#[event(fetch)]
async fn fetch(
    req: worker::web_sys::Request,
    env: Env,
    ctx: Context,
) -> worker::Result<worker::web_sys::Response> {
    let core_req = convert::request(req, crate::api::relay::read_limit).await?;
    let resolved = resolve(&env)?;
    let replicated = resolved.replicated;
    let session_start = match replicated.then(|| replicas::session_start(&core_req)) {
        Some(Err(e)) => return convert::response(crate::api::error_response(&e)),
        Some(Ok(start)) => Some(start),
        None => None,
    };
    let answers_bookmark = replicated && replicas::answers_bookmark(&core_req.path);
    let app = app_of(&resolved, session_start.as_deref())?;
    let mut resp = app.handle(core_req).await;
    if answers_bookmark {
        if let Some(b) = app.platform.db().bookmark() {
            resp.headers.push((replicas::BOOKMARK_HEADER.into(), b));
        }
    }
    let deferred = std::mem::take(&mut resp.deferred);
    let after_stream = resp.deferred_after_stream.take();
    if let Some(rx) = resp.limits_after.take() {
        let resolved = Rc::clone(&resolved);
        ctx.wait_until(async move {
            // Resolves when the answer is complete (a stream ended or abandoned); a call no
            // ledger counted sends nothing.
            if let Ok(settlements) = rx.await {
                let db = D1Db::Primary(resolved.db());
                settlements.run(&resolved.counters, &db).await;
            }
        });
    }
    // Writes known now that find a window open are left to it: no deferred work of this
    // request's own, which the runtime would track and run.
    let deferred = match after_stream {
        None => WRITES.with(|w| w.join(deferred)).err().unwrap_or_default(),
        Some(_) => deferred,
    };
    if !deferred.is_empty() || after_stream.is_some() {
        let db = D1Db::Primary(resolved.db());
        ctx.wait_until(async move {
            let mut stmts = deferred;
            if let Some(rx) = after_stream {
                // Resolves when the streamed body has ended (or was abandoned by the client).
                stmts.extend(rx.await.unwrap_or_default());
            }
            // Gathered with the other requests' of this isolate into one batch (the core logs
            // what could not be written).
            let writes = WRITES.with(Rc::clone);
            // Ends at once unless this request opens the window; the outcome is not awaited.
            let window = || Delay::from(Duration::from_millis(write_behind::WINDOW_MS));
            drop(writes.write(&db, stmts, window).await);
        });
    }
    convert::response(resp)
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    match app(&env, None) {
        Ok(app) => {
            if let Err(e) = app.purge().await {
                log::error!("purge failed: {e}");
            }
        }
        Err(e) => log::error!("purge could not start: {e}"),
    }
}
