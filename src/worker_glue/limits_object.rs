//! The Durable Object that owns one ledger of limits over time (a gateway key's or a tenant's,
//! named by [`Scope::name`]) and the port the relay reaches it through. Thin on purpose: it loads
//! the ledger from its own storage once, applies each operation with the core's arithmetic
//! ([`Ledger::apply`]) and stores the ledger again before answering.
//!
//! Exact under concurrency because the runtime runs one object in one thread: between loading
//! (a storage read, during which its input gate holds other events back) and storing, nothing
//! awaits, so no two operations interleave; the output gate holds each answer until its write is
//! durable, so an answered reservation survives a restart of the object.

use crate::limits::{Counters, Decision, Ledger, Op, Scope, Unreachable};
use crate::store::Db;
use std::cell::RefCell;
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State};

/// The storage key of the ledger (one JSON value: a ledger holds at most 60 window slots, its
/// calls in flight and the aggregates not yet flushed).
const LEDGER_KEY: &str = "ledger";
/// The binding in wrangler.toml.
pub const BINDING: &str = "LIMITS";
/// How long gathered usage waits before it is written to D1, unless `USAGE_FLUSH_SECONDS` says
/// otherwise: the freshness of `used_token` and the history for calls an object counts.
pub const DEFAULT_FLUSH_SECONDS: i64 = 30;

#[durable_object(alarm)]
pub struct LimitsObject {
    state: State,
    env: Env,
    ledger: RefCell<Option<Ledger>>,
}

impl LimitsObject {
    async fn load(&self) -> worker::Result<()> {
        if self.ledger.borrow().is_some() {
            return Ok(());
        }
        let stored: Option<String> = self.state.storage().get(LEDGER_KEY).await?;
        let mut slot = self.ledger.borrow_mut();
        if slot.is_none() {
            let ledger = match stored.as_deref().map(serde_json::from_str::<Ledger>) {
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    // A ledger of an older shape: start again rather than refuse every call.
                    log::error!("limits: stored ledger unreadable ({e}); starting a new one");
                    Ledger::default()
                }
                None => Ledger::default(),
            };
            *slot = Some(ledger);
        }
        Ok(())
    }

    async fn store(&self) -> worker::Result<()> {
        let stored = match self.ledger.borrow().as_ref() {
            Some(l) => serde_json::to_string(l)?,
            None => return Ok(()),
        };
        self.state.storage().put(LEDGER_KEY, stored).await
    }

    fn flush_ms(&self) -> i64 {
        let seconds = self
            .env
            .var("USAGE_FLUSH_SECONDS")
            .ok()
            .and_then(|v| v.to_string().trim().parse::<i64>().ok())
            .filter(|s| (1..=3600).contains(s))
            .unwrap_or(DEFAULT_FLUSH_SECONDS);
        seconds * 1000
    }

    /// Wake for the next flush when usage waits and no wake-up is set.
    async fn arm(&self) -> worker::Result<()> {
        // Gathered usage only: budget alerts are raised by the ledger but not delivered yet.
        let pending = self.ledger.borrow().as_ref().is_some_and(Ledger::has_usage);
        if pending && self.state.storage().get_alarm().await?.is_none() {
            self.state.storage().set_alarm(self.flush_ms()).await?;
        }
        Ok(())
    }
}

impl DurableObject for LimitsObject {
    fn new(state: State, env: Env) -> Self {
        super::ports::init_logging();
        LimitsObject {
            state,
            env,
            ledger: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let op: Op = match req.json().await {
            Ok(op) => op,
            Err(e) => return Response::error(format!("not a ledger operation: {e}"), 400),
        };
        self.load().await?;
        let now = js_sys::Date::now() as i64;
        let (decision, stored) = {
            let mut slot = self.ledger.borrow_mut();
            let ledger = slot.get_or_insert_with(Ledger::default);
            let decision = ledger.apply(&op, now);
            (decision, serde_json::to_string(&*ledger)?)
        };
        self.state.storage().put(LEDGER_KEY, stored).await?;
        self.arm().await?;
        Response::from_json(&decision)
    }

    /// Write the usage gathered since the last flush to D1 as one batch (history rows, gateway
    /// key and model counters); a batch that fails is put back and tried at the next wake-up.
    async fn alarm(&self) -> worker::Result<Response> {
        self.load().await?;
        let flush = match self.ledger.borrow_mut().as_mut() {
            Some(l) => l.take_flush(),
            None => return Response::ok("nothing"),
        };
        if flush.is_empty() {
            return Response::ok("nothing");
        }
        let calls: u64 = flush.hours.iter().map(|b| b.totals.requests).sum();
        // Whose calls (ids only, never a secret): a key's object gathers its key's, a tenant's
        // those of calls by model id or of keys without limits of their own.
        let mut whose: Vec<&str> = flush
            .hours
            .iter()
            .map(|b| b.source.key_id.as_str())
            .map(|k| if k.is_empty() { "-" } else { k })
            .collect();
        whose.dedup();
        let whose = whose.join(",");
        let stmts = crate::store::usage::flush_stmts(&flush);
        let count = stmts.len();
        let db = super::ports::D1Db::Primary(self.env.d1("DB")?);
        match db.batch(stmts).await {
            Ok(_) => log::info!(
                "limits: flushed {calls} calls ({whose}) in one batch of {count} statements"
            ),
            Err(e) => {
                log::warn!("limits: flush failed ({e}); kept for the next one");
                if let Some(l) = self.ledger.borrow_mut().as_mut() {
                    l.restore(flush);
                }
            }
        }
        self.store().await?;
        self.arm().await?;
        Response::ok("flushed")
    }
}

/// The ledgers as Durable Objects: one per scope, reached by name.
pub struct DoCounters(pub Option<worker::ObjectNamespace>);

impl DoCounters {
    pub fn new(env: &Env) -> Self {
        DoCounters(env.durable_object(BINDING).ok())
    }
}

fn unreachable(e: impl std::fmt::Display) -> Unreachable {
    Unreachable(e.to_string())
}

impl Counters for DoCounters {
    async fn apply(&self, scope: &Scope, op: Op) -> Result<Option<Decision>, Unreachable> {
        let ns = self
            .0
            .as_ref()
            .ok_or_else(|| Unreachable(format!("no {BINDING} binding")))?;
        let stub = ns.get_by_name(&scope.name()).map_err(unreachable)?;
        let body = serde_json::to_string(&op).map_err(unreachable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        // The host is never resolved: a stub's fetch goes to the object.
        let req =
            Request::new_with_init("https://limits.keyward/op", &init).map_err(unreachable)?;
        let mut resp = stub.fetch_with_request(req).await.map_err(unreachable)?;
        if resp.status_code() != 200 {
            return Err(Unreachable(format!("answered {}", resp.status_code())));
        }
        resp.json::<Option<Decision>>().await.map_err(unreachable)
    }
}
