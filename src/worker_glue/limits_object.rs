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
use std::cell::RefCell;
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State};

/// The storage key of the ledger (one JSON value: a ledger holds at most 60 window slots, its
/// calls in flight and the aggregates not yet flushed).
const LEDGER_KEY: &str = "ledger";
/// The binding in wrangler.toml.
pub const BINDING: &str = "LIMITS";

#[durable_object(fetch)]
pub struct LimitsObject {
    state: State,
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
}

impl DurableObject for LimitsObject {
    fn new(state: State, _env: Env) -> Self {
        super::ports::init_logging();
        LimitsObject {
            state,
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
        Response::from_json(&decision)
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
