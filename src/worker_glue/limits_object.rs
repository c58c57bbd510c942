//! The Durable Object that owns one ledger of limits over time (a gateway key's or a tenant's,
//! named by [`Scope::name`]) and the port the relay reaches it through. Thin on purpose: it loads
//! the ledger from its own storage once, applies each operation with the core's arithmetic
//! ([`Ledger::apply`]) and stores the ledger again before answering.
//!
//! Exact under concurrency because the runtime runs one object in one thread: between loading
//! (a storage read, during which its input gate holds other events back) and storing, nothing
//! awaits, so no two operations interleave; the output gate holds each answer until its write is
//! durable, so an answered reservation survives a restart of the object.

use crate::limits::{Counters, Decision, Envelope, Ledger, Op, Scope, Unreachable, ALERT_ATTEMPTS};
use crate::store::Db;
use futures_util::future::{select, Either};
use std::cell::RefCell;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, Delay, DurableObject, Env, Method, Request, RequestInit, Response, State,
};

/// The storage key of the ledger (one JSON value: a ledger holds at most 60 window slots, its
/// calls in flight and the aggregates not yet flushed).
const LEDGER_KEY: &str = "ledger";
/// The binding in wrangler.toml.
pub const BINDING: &str = "LIMITS";
/// Longest the relay waits for an object's answer (its work is one storage read and write).
pub const OBJECT_TIMEOUT_MS: u64 = 5_000;
/// How long gathered usage waits before it is written to D1, unless `USAGE_FLUSH_SECONDS` says
/// otherwise: the freshness of `used_token` and the history for calls an object counts.
pub const DEFAULT_FLUSH_SECONDS: i64 = 30;
/// How long a budget alert waits before its first retry, unless `WEBHOOK_RETRY_SECONDS` says
/// otherwise (each later retry waits twice as long as the one before).
pub const DEFAULT_RETRY_SECONDS: i64 = 30;

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

    /// A number of seconds from 1 to 3600 in the variable `name`, in milliseconds.
    fn seconds_ms(&self, name: &str, default: i64) -> i64 {
        let seconds = self
            .env
            .var(name)
            .ok()
            .and_then(|v| v.to_string().trim().parse::<i64>().ok())
            .filter(|s| (1..=3600).contains(s))
            .unwrap_or(default);
        seconds * 1000
    }

    /// Wake for the next flush when usage waits, and at once when an alert is due: set the
    /// alarm when none is set or the one set is later than needed.
    async fn arm(&self) -> worker::Result<()> {
        let now = js_sys::Date::now() as i64;
        let wake = match self.ledger.borrow().as_ref() {
            Some(l) => {
                let flush = l
                    .has_usage()
                    .then(|| now + self.seconds_ms("USAGE_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS));
                match (flush, l.next_alert_ms()) {
                    (Some(f), Some(a)) => Some(f.min(a)),
                    (f, a) => f.or(a),
                }
            }
            None => None,
        };
        let Some(wake) = wake else {
            return Ok(());
        };
        let storage = self.state.storage();
        let set = storage.get_alarm().await?;
        if set.is_none_or(|at| at > wake) {
            storage.set_alarm((wake - now).max(0)).await?;
        }
        Ok(())
    }

    /// Post the budget alerts that are due to the tenant's webhook, one at a time, and record
    /// each attempt in the ledger (a failed one is tried again later, see [`Ledger::alert_attempted`]).
    async fn deliver_alerts(&self) {
        let now = js_sys::Date::now() as i64;
        let (owner, due) = match self.ledger.borrow().as_ref() {
            Some(l) => (l.owner().cloned(), l.alerts_due(now)),
            None => return,
        };
        if due.is_empty() {
            return;
        }
        let retry_ms = self.seconds_ms("WEBHOOK_RETRY_SECONDS", DEFAULT_RETRY_SECONDS);
        let app = match owner.as_ref().map(|_| super::app(&self.env, None)) {
            Some(Err(e)) => {
                // Counted as a failed attempt, so the retries back off instead of waking at once.
                log::error!("limits: budget alerts not posted, the deployment is unusable ({e})");
                None
            }
            Some(Ok(app)) => Some(app),
            None => None,
        };
        for alert in due {
            let attempt = alert.attempts + 1;
            let done = match (&owner, &app) {
                (Some(scope), Some(app)) => {
                    app.deliver_alert(scope, &alert, attempt, attempt >= ALERT_ATTEMPTS)
                        .await
                }
                (Some(_), None) => false,
                // A ledger stored before it knew its owner: nothing says whose the alert is.
                (None, _) => true,
            };
            // The ledger may have moved on meanwhile (the object answers calls while it posts);
            // the attempt is recorded against the event, whatever else changed.
            if let Some(l) = self.ledger.borrow_mut().as_mut() {
                l.alert_attempted(&alert, done, js_sys::Date::now() as i64, retry_ms);
            }
        }
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
        let envelope: Envelope = match req.json().await {
            Ok(e) => e,
            Err(e) => return Response::error(format!("not a ledger operation: {e}"), 400),
        };
        self.load().await?;
        let now = js_sys::Date::now() as i64;
        let (decision, stored) = {
            let mut slot = self.ledger.borrow_mut();
            let ledger = slot.get_or_insert_with(Ledger::default);
            let decision = envelope.apply(ledger, now);
            (decision, serde_json::to_string(&*ledger)?)
        };
        self.state.storage().put(LEDGER_KEY, stored).await?;
        self.arm().await?;
        Response::from_json(&decision)
    }

    /// Post the budget alerts that are due, then write the usage gathered since the last flush
    /// to D1 as one batch (history rows, gateway key and model counters); a batch that fails is
    /// put back and tried at the next wake-up.
    async fn alarm(&self) -> worker::Result<Response> {
        self.load().await?;
        self.deliver_alerts().await;
        let flush = match self.ledger.borrow_mut().as_mut() {
            Some(l) => l.take_flush(),
            None => return Response::ok("nothing"),
        };
        if flush.is_empty() {
            self.store().await?;
            self.arm().await?;
            return Response::ok("nothing to flush");
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
#[derive(Clone)]
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
        let body = serde_json::to_string(&Envelope {
            scope: scope.clone(),
            op,
        })
        .map_err(unreachable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        // The host is never resolved: a stub's fetch goes to the object.
        let req =
            Request::new_with_init("https://limits.keyward/op", &init).map_err(unreachable)?;
        let call = async move {
            let mut resp = stub.fetch_with_request(req).await.map_err(unreachable)?;
            if resp.status_code() != 200 {
                return Err(Unreachable(format!("answered {}", resp.status_code())));
            }
            resp.json::<Option<Decision>>().await.map_err(unreachable)
        };
        let timer = Delay::from(Duration::from_millis(OBJECT_TIMEOUT_MS));
        match select(Box::pin(call), timer).await {
            Either::Left((answer, _)) => answer,
            // Treated as unreachable (the relay fails closed); a reservation the object did
            // make meanwhile expires (RESERVATION_TTL_MS).
            Either::Right(_) => Err(Unreachable(format!(
                "no answer within {OBJECT_TIMEOUT_MS} ms"
            ))),
        }
    }
}
