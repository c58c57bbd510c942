//! A tenant's webhook for budget alerts (`/api/v1/tenant/webhook`): set, read, remove and test
//! it; and the signed delivery of one alert, which the Durable Object holding the ledger asks
//! for when a budget crosses a threshold.
//!
//! Signed as Stripe signs its events: the `keyward-signature` header is `t=<unix seconds>,
//! v1=<hex HMAC-SHA256 of "<t>.<body>" under the webhook's secret>`. The secret is sealed like
//! every provider credential and shown only once, when keyward generates it.

use super::auth::Caller;
use super::error::ApiError;
use super::http::Request;
use super::{body, App, Reply, Result};
use crate::domain::crypto::mask;
use crate::domain::hex;
use crate::domain::time::rfc3339;
use crate::domain::vault::Slot;
use crate::limits::{period_end, Alert, Scope};
use crate::providers::address;
use crate::store::outbound::{OutboundError, OutboundRequest};
use crate::store::webhooks::{self, Webhook};
use crate::store::{audit, Batch, Db, Platform};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "keyward-signature";
/// The header carrying the event's id (the same on every retry: receivers drop repeats by it).
pub const EVENT_ID_HEADER: &str = "keyward-event-id";
/// The header carrying the event's type.
pub const EVENT_TYPE_HEADER: &str = "keyward-event-type";
/// An alert's event type.
pub const BUDGET_EVENT: &str = "budget.threshold_reached";
/// A test delivery's event type.
pub const TEST_EVENT: &str = "webhook.test";
/// Longest a receiver may take to answer.
pub const DELIVERY_TIMEOUT_MS: u64 = 10_000;
/// Most of a receiver's answer read (it is only logged by status).
const ANSWER_MAX_BYTES: usize = 64 * 1024;
/// Shortest and longest secret a tenant may choose.
pub const SECRET_MIN: usize = 16;
pub const SECRET_MAX: usize = 256;
/// Longest webhook URL.
pub const URL_MAX: usize = 2048;
/// What a generated secret starts with (so it is recognisable in a receiver's config).
const SECRET_PREFIX: &str = "whsec_";

/// `PUT /api/v1/tenant/webhook`.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "PutWebhookRequest"))]
#[serde(deny_unknown_fields)]
pub struct PutWebhook {
    /// Where events are posted: an `https` URL (a loopback or private address only where the
    /// deployment allows provider calls to go there), never this deployment itself.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("maxLength" = 2048, "format" = "uri")))]
    pub url: String,
    /// The signing secret, 16 to 256 characters. Left out: the current one is kept, or for a new
    /// webhook one is generated and answered once.
    #[serde(
        default,
        deserialize_with = "body::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "String", extend("minLength" = 16, "maxLength" = 256)))]
    pub secret: Option<String>,
    /// `true`: generate a new secret (answered once) in place of the current one.
    #[serde(
        default,
        deserialize_with = "body::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "bool"))]
    pub new_secret: Option<bool>,
}

// A tenant's webhook.
/// The tenant's webhook; the secret itself only in the answer that generated it.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Webhook"))]
pub struct WebhookView {
    pub url: String,
    /// A masked hint of the secret.
    pub secret_hint: String,
    /// The secret keyward generated, present only in the answer that generated it: store it
    /// now, it is never shown again.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<String>,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub create_date: String,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub update_date: String,
}

// What a test delivery found.
/// The outcome of one delivery of a `webhook.test` event.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "WebhookTest"))]
pub struct TestDelivery {
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// The receiver's HTTP status, null when it did not answer.
    pub status: Option<u16>,
    /// Why it was not delivered, null when it was.
    pub error: Option<String>,
}

// What an alert is about.
/// The budget that crossed a threshold.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "BudgetAlert"))]
pub struct BudgetAlert<'a> {
    /// `ai_key`: a gateway key's budget; `tenant`: the tenant's.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["ai_key", "tenant"])))]
    pub scope: Cow<'a, str>,
    /// The gateway key, null for the tenant's budget.
    pub ai_key_id: Option<Cow<'a, str>>,
    /// Percent of the budget reached: 80 or 100.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = [80, 100])))]
    pub threshold: u8,
    /// The budget, in tokens per period.
    pub budget: u64,
    /// Tokens spent in the period when the threshold was crossed.
    pub spent: u64,
    /// `true` when raised because the relay refused a call the rest of the budget could not
    /// carry (under `reject` a budget stops admitting calls before it is spent to the token).
    pub refused: bool,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::domain::states::BudgetPeriod")
    )]
    pub period: Cow<'a, str>,
    /// When the period started (RFC 3339, UTC); the epoch for `total`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub period_start: String,
    /// When it ends and the budget resets; null for `total`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub period_end: Option<String>,
}

// One event, as posted to a tenant's webhook.
/// One event posted to a tenant's webhook. Verify `keyward-signature` (`t=<unix seconds>,
/// v1=<hex HMAC-SHA256 of "<t>.<raw body>" under the secret>`), refuse a `t` far from now, and
/// drop an `id` already seen: a retried event keeps its id.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "WebhookEvent"))]
pub struct Event<'a> {
    /// `evt_` and 32 hex digits, the same on every retry.
    pub id: String,
    /// `budget.threshold_reached`, or `webhook.test` from the test route.
    #[serde(rename = "type")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["budget.threshold_reached", "webhook.test"])))]
    pub kind: Cow<'a, str>,
    /// When the event happened (the threshold was crossed), in Unix seconds.
    pub created: i64,
    pub tenant_id: Cow<'a, str>,
    /// The budget; null for `webhook.test`.
    pub data: Option<BudgetAlert<'a>>,
}

/// The `keyward-signature` value for `body` sent at `t` (Unix seconds).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of every length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// An alert's event id: the same for every attempt at one threshold of one budget in one period
/// of one ledger.
pub fn event_id(scope: &Scope, alert: &Alert) -> String {
    let digest = Sha256::new()
        .chain_update(scope.name())
        .chain_update([0])
        .chain_update(alert.period_start_ms.to_string())
        .chain_update([0])
        .chain_update(alert.budget.to_string())
        .chain_update([0])
        .chain_update([alert.threshold])
        .finalize();
    format!("evt_{}", hex(&digest[..16]))
}

/// The event an alert is posted as.
pub fn alert_event<'a>(scope: &'a Scope, alert: &Alert) -> Event<'a> {
    let (tenant_id, ai_key_id) = match scope {
        Scope::Key { tenant_id, key_id } => (tenant_id, Some(Cow::Borrowed(key_id.as_str()))),
        Scope::Tenant { tenant_id } => (tenant_id, None),
    };
    Event {
        id: event_id(scope, alert),
        kind: BUDGET_EVENT.into(),
        created: alert.at_ms.div_euclid(1000),
        tenant_id: tenant_id.as_str().into(),
        data: Some(BudgetAlert {
            scope: if ai_key_id.is_some() {
                "ai_key"
            } else {
                "tenant"
            }
            .into(),
            ai_key_id,
            threshold: alert.threshold,
            budget: alert.budget,
            spent: alert.spent,
            refused: alert.refused,
            period: alert.period.as_str().into(),
            period_start: rfc3339(alert.period_start_ms),
            period_end: period_end(alert.period, alert.period_start_ms).map(rfc3339),
        }),
    }
}

/// How one delivery went.
enum Sent {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// It answered otherwise, or not at all: the text says which.
    Failed(Option<u16>, String),
}

fn check_secret(s: &str) -> Result<()> {
    let n = s.chars().count();
    if !(SECRET_MIN..=SECRET_MAX).contains(&n) {
        return Err(ApiError::bad(
            "secret",
            format!("must be {SECRET_MIN} to {SECRET_MAX} characters, not {n}"),
        ));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::bad(
            "secret",
            "must not hold spaces or control characters",
        ));
    }
    Ok(())
}

/// `https`, or `http` to an address that is not public (a receiver on the deployment's own
/// network, which the address policy must still allow); no credentials in the URL.
fn check_scheme(raw: &str) -> Result<()> {
    let u = url::Url::parse(raw)
        .map_err(|e| ApiError::bad("url", format!("is not a valid URL ({e})")))?;
    let public = address::classify(&u) == address::AddressClass::Public;
    match u.scheme() {
        "https" => {}
        "http" if !public => {}
        "http" => {
            return Err(ApiError::bad(
                "url",
                "must be https (http only to a loopback or private address)",
            ))
        }
        other => {
            return Err(ApiError::bad(
                "url",
                format!("must be an https URL, not {other}:"),
            ))
        }
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(ApiError::bad(
            "url",
            "must not hold a user name or password (events are signed with the secret instead)",
        ));
    }
    Ok(())
}

fn view(w: &Webhook, secret: Option<String>) -> WebhookView {
    WebhookView {
        url: w.url.clone(),
        secret_hint: w.secret_hint.clone(),
        secret,
        create_date: rfc3339(w.create_date),
        update_date: rfc3339(w.update_date),
    }
}

fn no_webhook() -> ApiError {
    ApiError::NotFound("This tenant has no webhook; set one with PUT /api/v1/tenant/webhook".into())
}

/// The host an audit entry names (a webhook URL's path or query may hold a token).
fn host_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| "?".into(), |u| address::shown_host(&u))
}

impl<P: Platform> App<P> {
    pub(crate) async fn get_webhook(&self, caller: &Caller) -> Result<Reply> {
        let w = webhooks::get(self.platform.db(), &caller.tenant_id)
            .await?
            .ok_or_else(no_webhook)?;
        Ok(Reply::ok(view(&w, None)))
    }

    pub(crate) async fn put_webhook(&self, caller: &Caller, req: &Request) -> Result<Reply> {
        let b: PutWebhook = body::parse(req)?;
        let url = b.url.trim();
        if url.len() > URL_MAX {
            return Err(ApiError::bad(
                "url",
                format!("must be at most {URL_MAX} bytes"),
            ));
        }
        check_scheme(url)?;
        self.check_saved_url(req, "url", url)?;
        let regenerate = b.new_secret.unwrap_or(false);
        if regenerate && b.secret.is_some() {
            return Err(ApiError::BadRequest(
                "Send either secret or new_secret: true, not both".into(),
            ));
        }
        if let Some(s) = &b.secret {
            check_secret(s)?;
        }
        let tenant_id = caller.tenant_id.as_str();
        let current = webhooks::get(self.platform.db(), tenant_id).await?;
        let now = self.platform.now_ms();
        let slot = Slot::Webhook { tenant_id };
        let seal = |secret: &str| {
            self.vault()
                .seal(slot, secret, &|buf| self.platform.fill_random(buf))
                .map_err(|e| ApiError::Internal(format!("sealing a webhook secret: {e}")))
        };
        let (key_version, sealed, hint, generated, how) = match (&b.secret, &current) {
            (Some(s), _) => {
                let (v, sealed) = seal(s)?;
                (v, sealed, mask(s), None, "set")
            }
            (None, Some(w)) if !regenerate => (
                w.key_version,
                w.secret.clone(),
                w.secret_hint.clone(),
                None,
                "kept",
            ),
            (None, _) => {
                let mut bytes = [0u8; 32];
                self.platform.fill_random(&mut bytes);
                let s = format!(
                    "{SECRET_PREFIX}{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                );
                let (v, sealed) = seal(&s)?;
                let hint = mask(&s);
                (v, sealed, hint, Some(s), "generated")
            }
        };
        let w = Webhook {
            tenant_id: tenant_id.to_owned(),
            url: url.to_owned(),
            key_version,
            secret: sealed,
            secret_hint: hint,
            create_date: current.as_ref().map_or(now, |c| c.create_date),
            update_date: now,
        };
        let mut batch = Batch::new();
        let set = batch
            .push(webhooks::upsert(&w))
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::User(&caller.username),
                "webhook.set",
                tenant_id,
                Some(tenant_id),
                &format!("host={} secret={how}", host_of(url)),
            ))
            .handle();
        let done = batch.run(self.platform.db()).await?;
        if !done.did_change(set) {
            return Err(ApiError::NotFound(
                "The caller's tenant no longer exists".into(),
            ));
        }
        Ok(Reply::ok(view(&w, generated)))
    }

    pub(crate) async fn delete_webhook(&self, caller: &Caller) -> Result<Reply> {
        let tenant_id = caller.tenant_id.as_str();
        let mut batch = Batch::new();
        let gone = batch
            .push(webhooks::delete(tenant_id))
            .then_if_changed(audit::record_if_changed(
                self.platform.now_ms(),
                audit::Actor::User(&caller.username),
                "webhook.delete",
                tenant_id,
                Some(tenant_id),
                "",
            ))
            .handle();
        let done = batch.run(self.platform.db()).await?;
        if !done.did_change(gone) {
            return Err(no_webhook());
        }
        Ok(Reply::ok(true))
    }

    /// Post a `webhook.test` event now and say how it went (not retried, not audited).
    pub(crate) async fn test_webhook(&self, caller: &Caller) -> Result<Reply> {
        let w = webhooks::get(self.platform.db(), &caller.tenant_id)
            .await?
            .ok_or_else(no_webhook)?;
        let now = self.platform.now_ms();
        let id = crate::domain::new_id(|b| self.platform.fill_random(b));
        let event = Event {
            id: format!("evt_{id}"),
            kind: TEST_EVENT.into(),
            created: now.div_euclid(1000),
            tenant_id: caller.tenant_id.as_str().into(),
            data: None,
        };
        let secret = self.webhook_secret(&w).map_err(ApiError::Internal)?;
        Ok(Reply::ok(
            match self.post_event(&w, &secret, &event).await {
                Sent::Delivered(status) => TestDelivery {
                    delivered: true,
                    status: Some(status),
                    error: None,
                },
                Sent::Failed(status, why) => TestDelivery {
                    delivered: false,
                    status,
                    error: Some(why),
                },
            },
        ))
    }

    fn webhook_secret(&self, w: &Webhook) -> std::result::Result<String, String> {
        self.vault()
            .open(
                Slot::Webhook {
                    tenant_id: &w.tenant_id,
                },
                w.key_version,
                &w.secret,
            )
            .map_err(|e| {
                format!(
                    "the webhook secret of tenant {} does not open: {e}",
                    w.tenant_id
                )
            })
    }

    /// Sign and post `event` to `w`. Redirects are not followed (a 3xx is a failure).
    async fn post_event(&self, w: &Webhook, secret: &str, event: &Event<'_>) -> Sent {
        if let Some(why) = self.stored_url_refusal(&w.url) {
            return Sent::Failed(None, format!("the URL may not be called: {why}"));
        }
        let body = match serde_json::to_vec(event) {
            Ok(b) => b,
            Err(e) => return Sent::Failed(None, format!("the event did not serialize: {e}")),
        };
        let t = self.platform.now_ms().div_euclid(1000);
        let req = OutboundRequest {
            method: "POST",
            url: w.url.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("user-agent".into(), "keyward-webhooks/1".into()),
                (EVENT_ID_HEADER.into(), event.id.clone()),
                (EVENT_TYPE_HEADER.into(), event.kind.to_string()),
                (SIGNATURE_HEADER.into(), signature(secret, t, &body)),
            ],
            body: Some(body),
            timeout_ms: DELIVERY_TIMEOUT_MS,
            max_response_bytes: ANSWER_MAX_BYTES,
            idle_timeout_ms: None,
        };
        match self.send_out(req).await {
            Ok(r) if (200..300).contains(&r.status) => Sent::Delivered(r.status),
            Ok(r) => Sent::Failed(
                Some(r.status),
                format!("the receiver answered {}", r.status),
            ),
            // The port gives no status with it: not taken as received.
            Err(OutboundError::TooLarge) => {
                Sent::Failed(None, "the receiver's answer was too large".into())
            }
            Err(OutboundError::Timeout) => Sent::Failed(
                None,
                format!("no answer within {} s", DELIVERY_TIMEOUT_MS / 1000),
            ),
            Err(OutboundError::Unreachable(_)) => {
                Sent::Failed(None, "the receiver could not be reached".into())
            }
        }
    }

    /// Deliver one budget alert of `scope`'s ledger; `attempt` counts from 1, `last` says no
    /// retry follows. Returns whether the alert is done with: delivered, or with nowhere to go
    /// (no webhook, or one that cannot be used); false asks for a retry. The outcome is written
    /// to the audit log when it is final: delivered, or failed at the last attempt.
    pub async fn deliver_alert(
        &self,
        scope: &Scope,
        alert: &Alert,
        attempt: u32,
        last: bool,
    ) -> bool {
        let tenant_id = match scope {
            Scope::Key { tenant_id, .. } | Scope::Tenant { tenant_id } => tenant_id.as_str(),
        };
        let event = alert_event(scope, alert);
        let w = match webhooks::get(self.platform.db(), tenant_id).await {
            Ok(Some(w)) => w,
            Ok(None) => {
                log::info!("alert {}: tenant {tenant_id} has no webhook", event.id);
                return true;
            }
            Err(e) => {
                log::warn!("alert {}: the webhook could not be read ({e})", event.id);
                return last;
            }
        };
        let (done, outcome) = match self.webhook_secret(&w) {
            Err(e) => {
                log::error!("alert {}: {e}", event.id);
                (true, Err("the webhook secret does not open".to_owned()))
            }
            Ok(secret) => match self.post_event(&w, &secret, &event).await {
                Sent::Delivered(status) => (true, Ok(status)),
                Sent::Failed(_, why) => (last, Err(why)),
            },
        };
        let about = match scope {
            Scope::Key { key_id, .. } => format!("ai_key {key_id}"),
            Scope::Tenant { .. } => "tenant".into(),
        };
        let what = format!(
            "{}% of {about}'s {} budget of {} (period from {})",
            alert.threshold,
            alert.period.as_str(),
            alert.budget,
            rfc3339(alert.period_start_ms)
        );
        let (action, detail) = match &outcome {
            Ok(status) => (
                "webhook.delivered",
                format!(
                    "{what} to {}: HTTP {status} at attempt {attempt}",
                    host_of(&w.url)
                ),
            ),
            Err(why) => {
                log::warn!("alert {} attempt {attempt}: {why}", event.id);
                (
                    "webhook.failed",
                    format!(
                        "{what} to {}: {why}; gave up after attempt {attempt}",
                        host_of(&w.url)
                    ),
                )
            }
        };
        if outcome.is_ok() || done {
            let entry = audit::record(
                self.platform.now_ms(),
                audit::Actor::System,
                action,
                &event.id,
                Some(tenant_id),
                &detail,
            );
            if let Err(e) = self.platform.db().execute(entry).await {
                log::warn!("alert {}: the audit entry was not written ({e})", event.id);
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::states::BudgetPeriod;

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_and_the_body() {
        // Python's hmac.new(secret, b"1764612345." + body, hashlib.sha256).hexdigest().
        let sig = signature("whsec_test_secret_0123", 1764612345, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1764612345,v1=12c0aa5c710d15eabecfdf3b54114976d0bc9a726aee8d271299223a518e3a99"
        );
    }

    #[test]
    fn an_alert_keeps_its_event_id_across_attempts_and_differs_per_threshold_and_budget() {
        let scope = Scope::Key {
            tenant_id: "t".into(),
            key_id: "k".into(),
        };
        let a = Alert {
            threshold: 80,
            period: BudgetPeriod::Month,
            period_start_ms: 0,
            budget: 100,
            spent: 80,
            at_ms: 5_000,
            refused: false,
            attempts: 0,
            next_ms: 0,
        };
        let retried = Alert {
            attempts: 3,
            next_ms: 9,
            ..a.clone()
        };
        assert_eq!(event_id(&scope, &a), event_id(&scope, &retried));
        let hundred = Alert {
            threshold: 100,
            ..a.clone()
        };
        let other_budget = Alert {
            budget: 200,
            ..a.clone()
        };
        let tenant = Scope::Tenant {
            tenant_id: "t".into(),
        };
        let ids = [
            event_id(&scope, &a),
            event_id(&scope, &hundred),
            event_id(&scope, &other_budget),
            event_id(&tenant, &a),
        ];
        for (i, x) in ids.iter().enumerate() {
            assert!(x.starts_with("evt_") && x.len() == 36, "{x}");
            assert!(ids[i + 1..].iter().all(|y| y != x), "{x} repeats");
        }
        let e = alert_event(&scope, &a);
        let data = e.data.expect("an alert has data");
        assert_eq!(
            (e.created, data.threshold, data.scope.as_ref()),
            (5, 80, "ai_key")
        );
        assert_eq!(data.period_end.as_deref(), Some("1970-02-01T00:00:00Z"));
    }
}
