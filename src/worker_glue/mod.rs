//! The Workers runtime side: entry points, and the ports over D1, KV, the clock and randomness.
//! Kept thin on purpose: everything it does not have to do lives in the natively tested core.

mod convert;
mod limiter;
mod limits_object;
mod outbound;
mod ports;

use crate::api::{App, Config};
use crate::env_config::{ConfigCache, EnvValues};
use ports::{D1Db, WorkerPlatform};
use worker::{event, Context, Env, ScheduleContext, ScheduledEvent};

/// Bodies above this are not read at all; the core answers 413 from the declared length.
const READ_LIMIT: u64 = 1024 * 1024;

thread_local! {
    /// This isolate's parsed config; see [`crate::env_config`] for why it is keyed on the values.
    static CONFIG: ConfigCache = ConfigCache::default();
}

fn config(env: &Env) -> Config {
    let values = EnvValues::read(
        |name| env.var(name).ok().map(|v| v.to_string()),
        |name| env.secret(name).ok().map(|v| v.to_string()),
    );
    CONFIG.with(|cache| cache.get(values))
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
    if let Some(rx) = resp.limits_after.take() {
        let counters = limits_object::DoCounters::new(&env);
        let db = D1Db(env.d1("DB")?);
        ctx.wait_until(async move {
            // Resolves when the answer is complete (a stream ended or abandoned).
            if let Ok(settlements) = rx.await {
                settlements.run(&counters, &db).await;
            }
        });
    }
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
