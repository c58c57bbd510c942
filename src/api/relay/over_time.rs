//! The relay's side of limits over time: reserve in the gateway key's ledger, then the tenant's,
//! before forwarding; settle with the provider's usage once the answer (or the stream) is done;
//! release when the call fails. Keys and tenants without limits over time never reach a ledger.

use super::{RResult, RelayError, Target};
use crate::api::auth::Caller;
use crate::limits::{
    Ask, Counters, Decision, Exceeded, Limits, Op, Scope, Settlements, Source, Used,
};
use crate::relay::{Endpoint, ErrorCode, ErrorType, OnUsage, Usage, LIMIT_HEADER};
use crate::store::ai_keys::ServedBy;
use crate::store::{usage, Platform};
use futures_channel::oneshot;
use serde_json::Value;

/// Output tokens reserved for a chat call that names no cap and whose key sets no output limit;
/// the settlement corrects it to what the provider reports.
pub const DEFAULT_OUTPUT_RESERVE: u64 = 1024;
/// `Retry-After` of the 503 answered when a ledger cannot be reached.
pub const UNREACHABLE_RETRY_S: u64 = 5;

/// The reservations one relay call holds, in the order they were made.
#[derive(Clone, Default)]
pub(super) struct Held {
    reservations: Vec<(Scope, Limits, u64)>,
    source: Source,
    estimate: u64,
}

impl Held {
    /// The settlements of every reservation with the call's usage; the first ledger records the
    /// call (history and counters), the others only count it.
    fn settlements(&self, used: Used, source: &Source) -> Vec<(Scope, Op)> {
        self.reservations
            .iter()
            .enumerate()
            .map(|(i, (scope, limits, id))| {
                let op = Op::Settle {
                    limits: *limits,
                    id: *id,
                    used,
                    record: (i == 0).then(|| source.clone()),
                };
                (scope.clone(), op)
            })
            .collect()
    }

    /// Forget the reservations (they were handed to a settlement).
    pub(super) fn clear(&mut self) {
        self.reservations.clear();
    }
}

/// Wrap a call's usage writes: a call no ledger counts keeps its own writes (one batch, with its
/// history rows); a counted call hands its settlements over instead, which the answer carries in
/// `limits_after` (a stream's when it ends or is dropped), the first ledger recording it and the
/// writes kept only for when that ledger cannot be reached. No receiver when nothing was
/// reserved: then nobody waits on the answer for settlements that never come.
pub(super) fn settle_on(
    held: Held,
    served: ServedBy,
    now: i64,
    inner: OnUsage,
) -> (OnUsage, Option<oneshot::Receiver<Settlements>>) {
    let (tx, rx) = oneshot::channel();
    let rx = (!held.reservations.is_empty()).then_some(rx);
    let on_usage: OnUsage = Box::new(move |u: Usage| {
        let used = Used {
            input: u.input.unwrap_or(held.estimate),
            output: u.output.unwrap_or(0),
        };
        let source = Source {
            member: u32::try_from(served.index).unwrap_or(0),
            pool_size: u32::try_from(served.size).unwrap_or(1),
            ..held.source.clone()
        };
        let mut writes = inner(u);
        writes.extend(usage::record_call(&source, used, now));
        if held.reservations.is_empty() {
            return writes;
        }
        // The receiver is gone only when the answer was dropped unsent; expiry frees it then.
        let _ = tx.send(Settlements {
            ops: held.settlements(used, &source),
            fallback: writes,
        });
        Vec::new()
    });
    (on_usage, rx)
}

/// The output cap a call was sent with (after the key's output limit applied). Embeddings,
/// rerank and speech count input only; a transcript's length is not known before it is made.
fn output_cap(body: &Value, endpoint: Endpoint) -> u64 {
    match endpoint {
        Endpoint::Embeddings | Endpoint::Rerank | Endpoint::Speech => 0,
        Endpoint::Transcription => DEFAULT_OUTPUT_RESERVE,
        Endpoint::Chat => ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|f| body.get(*f).and_then(Value::as_u64))
            .unwrap_or(DEFAULT_OUTPUT_RESERVE),
    }
}

fn refused(scope: &Scope, exceeded: Exceeded, retry_after: Option<u64>) -> RelayError {
    let whose = match scope {
        Scope::Key { .. } => "this gateway key",
        Scope::Tenant { .. } => "this tenant",
    };
    let (code, what) = match exceeded {
        Exceeded::Rpm => (ErrorCode::RateLimitExceeded, "requests per minute"),
        Exceeded::Tpm => (ErrorCode::RateLimitExceeded, "tokens per minute"),
        Exceeded::Budget => (ErrorCode::BudgetExceeded, "token budget"),
    };
    let when = match retry_after {
        Some(s) => format!("; try again in {s} s"),
        None => "; it does not reset (total budget)".into(),
    };
    RelayError {
        retry_after,
        ..RelayError::new(
            429,
            ErrorType::RateLimit,
            Some(code),
            format!("The {what} limit of {whose} is reached{when}"),
        )
    }
}

fn too_large(scope: &Scope, exceeded: Exceeded, limit: u64, asked: u64) -> RelayError {
    let whose = match scope {
        Scope::Key { .. } => "this gateway key",
        Scope::Tenant { .. } => "this tenant",
    };
    let what = match exceeded {
        Exceeded::Rpm | Exceeded::Tpm => "tokens per minute",
        Exceeded::Budget => "token budget",
    };
    RelayError::new(
        400,
        ErrorType::InvalidRequest,
        Some(ErrorCode::RequestOverLimit),
        format!(
            "This request reserves {asked} tokens (input estimate plus output cap), more than the \
             {what} of {whose} ({limit}); send a smaller max_tokens"
        ),
    )
}

fn unreachable() -> RelayError {
    RelayError {
        retry_after: Some(UNREACHABLE_RETRY_S),
        ..RelayError::new(
            503,
            ErrorType::Server,
            Some(ErrorCode::LimitsUnavailable),
            "The usage limits of this call cannot be checked right now; nothing was sent",
        )
    }
}

impl<P: Platform> crate::api::App<P> {
    /// Reserve the call in every ledger with limits over time (the key's, then the tenant's).
    /// A refusal releases what was reserved before it; an unreachable ledger is a 503 and
    /// nothing is forwarded. `use_anyway` past a limit adds `x-keyward-limit-exceeded`.
    pub(super) async fn reserve_over_time(
        &self,
        caller: &Caller,
        target: &Target,
        body: &Value,
        endpoint: Endpoint,
        estimate: u64,
        headers: &mut Vec<(String, String)>,
    ) -> RResult<Held> {
        let mut scopes: Vec<(Scope, Limits)> = Vec::new();
        if let Some(key) = target.gateway.as_ref().filter(|k| k.limits().any()) {
            let scope = Scope::Key {
                tenant_id: key.tenant_id.clone(),
                key_id: key.id.clone(),
            };
            scopes.push((scope, key.limits()));
        }
        if caller.tenant_limits.any() {
            let scope = Scope::Tenant {
                tenant_id: caller.tenant_id.clone(),
            };
            scopes.push((scope, caller.tenant_limits));
        }
        let (connection_id, llm_name) = target.usage_conn.clone().unwrap_or_default();
        let source = Source {
            tenant_id: caller.tenant_id.clone(),
            key_id: target
                .gateway
                .as_ref()
                .map(|k| k.id.clone())
                .unwrap_or_default(),
            connection_id,
            llm_name,
            model: match &target.gateway {
                Some(k) => format!("{}@{}", k.model, k.provider),
                None => target.shown.clone(),
            },
            ..Source::default()
        };
        let mut held = Held {
            reservations: Vec::new(),
            source: source.clone(),
            estimate,
        };
        let ask = Ask {
            tokens: estimate + output_cap(body, endpoint),
            source,
        };
        for (scope, limits) in scopes {
            let op = Op::Reserve {
                limits,
                ask: ask.clone(),
            };
            let failure = match self.platform.counters().apply(&scope, op).await {
                Ok(Some(Decision::Admitted { id, exceeded })) => {
                    if let Some(e) = exceeded {
                        headers.push((LIMIT_HEADER.into(), e.as_str().into()));
                    }
                    held.reservations.push((scope, limits, id));
                    continue;
                }
                Ok(Some(Decision::Refused {
                    exceeded,
                    retry_after,
                })) => refused(&scope, exceeded, retry_after),
                Ok(Some(Decision::TooLarge { exceeded, limit })) => {
                    too_large(&scope, exceeded, limit, ask.tokens)
                }
                Ok(None) => {
                    log::error!(
                        "limits: {} answered a reservation with nothing",
                        scope.name()
                    );
                    unreachable()
                }
                Err(e) => {
                    log::warn!("limits: {} unreachable: {}", scope.name(), e.0);
                    unreachable()
                }
            };
            self.release_held(held).await;
            return Err(failure);
        }
        Ok(held)
    }

    /// Give back every reservation of a call that failed before any answer.
    pub(super) async fn release_held(&self, held: Held) {
        for (scope, limits, id) in held.reservations {
            let op = Op::Release { limits, id };
            if let Err(e) = self.platform.counters().apply(&scope, op).await {
                // Expiry frees it (limits::RESERVATION_TTL_MS).
                log::warn!("limits: release in {} failed: {}", scope.name(), e.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> Usage {
        Usage {
            input: Some(3),
            output: Some(4),
        }
    }

    #[test]
    fn a_call_no_ledger_counted_keeps_its_writes_and_gives_nothing_to_wait_for() {
        let held = Held::default();
        let served = ServedBy { index: 0, size: 1 };
        let (on_usage, settled) = settle_on(held, served, 0, Box::new(|_| Vec::new()));
        assert!(settled.is_none(), "nobody should wait for settlements");
        // The history row of the call, written with the call's own deferred writes.
        assert_eq!(on_usage(usage()).len(), 1);
    }

    #[test]
    fn a_counted_call_hands_its_writes_to_the_settlements() {
        let mut held = Held::default();
        held.reservations.push((
            Scope::Key {
                tenant_id: "t".into(),
                key_id: "k".into(),
            },
            Limits {
                rpm: 10,
                ..Limits::NONE
            },
            1,
        ));
        let served = ServedBy { index: 0, size: 1 };
        let (on_usage, settled) = settle_on(held, served, 0, Box::new(|_| Vec::new()));
        assert!(on_usage(usage()).is_empty());
        let mut rx = settled.expect("a receiver");
        let s = rx.try_recv().expect("sent").expect("settlements");
        assert_eq!(s.ops.len(), 1);
        assert_eq!(s.fallback.len(), 1);
    }
}
