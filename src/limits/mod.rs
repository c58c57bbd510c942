//! Limits over time: requests and tokens per minute, a token budget per UTC period, reservations,
//! usage aggregates and budget alerts, for one gateway key or one tenant. Pure arithmetic over a
//! [`Ledger`] and an injected clock (every call takes `now_ms`); the Durable Object that owns a
//! ledger (`worker_glue`) only loads it, calls it and stores it, and [`Counters`] is the port the
//! relay reaches it through.

use crate::domain::states::{BudgetPeriod, UsagePolicy};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The live window of the per-minute limits: the last 60 s, counted in one-second slots (so a
/// ledger holds at most 60 of them however many calls a minute brings).
pub const WINDOW_S: i64 = 60;
/// How long a reservation holds its tokens when it is neither settled nor released: an isolate
/// that died mid-call never settles. Longer than any call should take (the provider timeout is
/// 10 s, a stream's idle timeout at most 60 s between chunks); a settlement arriving later still
/// charges what was used.
pub const RESERVATION_TTL_MS: i64 = 15 * 60_000;
/// Budget thresholds that raise an alert, in percent.
pub const THRESHOLDS: [u8; 2] = [80, 100];
/// Alert deliveries tried per threshold before giving up (the retries `WEBHOOK_RETRY_SECONDS`,
/// then twice, four and eight times that apart).
pub const ALERT_ATTEMPTS: u32 = 5;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The limits over time of one gateway key or one tenant; 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens (input + output) per minute.
    pub tpm: u64,
    /// Tokens per `period`.
    pub budget: u64,
    pub period: BudgetPeriod,
    pub policy: UsagePolicy,
}

impl Limits {
    /// No limit at all: the relay does not reach an object for it.
    pub const NONE: Limits = Limits {
        rpm: 0,
        tpm: 0,
        budget: 0,
        period: BudgetPeriod::Month,
        policy: UsagePolicy::Reject,
    };

    /// Whether any limit over time is set.
    pub fn any(&self) -> bool {
        self.rpm > 0 || self.tpm > 0 || self.budget > 0
    }
}

/// The limit a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exceeded {
    Rpm,
    Tpm,
    Budget,
}

impl Exceeded {
    /// Its text in `x-keyward-limit-exceeded` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::Rpm => "rpm",
            Exceeded::Tpm => "tpm",
            Exceeded::Budget => "budget",
        }
    }
}

/// Where a call's usage goes when the ledger that recorded it flushes: the history's key
/// (tenant, gateway key, model) and the counters the call bumps (the key's, with the pool member
/// that served it, and the connection's model).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Source {
    pub tenant_id: String,
    /// The gateway key, empty for a call by model id.
    pub key_id: String,
    /// The pool member that served the call and the pool's size (0 when not known yet).
    pub member: u32,
    pub pool_size: u32,
    /// The connection and its model name whose `used_token` counts the call; empty for none.
    pub connection_id: String,
    pub llm_name: String,
    /// The model the history is kept by: `name@factory`.
    pub model: String,
}

/// What a reservation asks for: the estimated input tokens plus the output cap, and whose call it
/// is (a refusal is counted in the history under it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub tokens: u64,
    pub source: Source,
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// Forward it; settle or release `id` afterwards. `exceeded` is set when a limit was over
    /// and the policy is `use_anyway`.
    Admitted { id: u64, exceeded: Option<Exceeded> },
    /// Refuse it (`reject`): 429 with `retry_after` seconds, `None` when waiting cannot help
    /// within a period (a `total` budget spent).
    Refused {
        exceeded: Exceeded,
        retry_after: Option<u64>,
    },
    /// The request alone asks for more than the limit ever admits (its reservation is larger
    /// than the TPM or the whole budget): no wait helps, a smaller output cap does.
    TooLarge { exceeded: Exceeded, limit: u64 },
}

/// Tokens a provider reported for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Used {
    pub input: u64,
    pub output: u64,
}

/// Usage of one model in one hour, as it is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub rejected: u64,
}

impl Totals {
    /// Add another's counts to these.
    pub fn add_all(&mut self, o: &Totals) {
        self.add(o);
    }

    fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.rejected += o.rejected;
    }
}

/// One aggregate row to write: a source's totals in the bucket starting at `start_ms`, and the
/// last call it counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub source: Source,
    pub start_ms: i64,
    pub totals: Totals,
    pub last_ms: i64,
}

/// What a flush hands to the database: hour buckets and the day buckets they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flush {
    pub hours: Vec<Bucket>,
    pub days: Vec<Bucket>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }
}

/// A budget alert to deliver: `threshold` percent of `budget` reached in the period starting at
/// `period_start_ms` (`spent` tokens by `at_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub threshold: u8,
    pub period: BudgetPeriod,
    pub period_start_ms: i64,
    pub budget: u64,
    pub spent: u64,
    pub at_ms: i64,
    /// Raised because a call was refused: the rest of the budget could not carry it.
    #[serde(default)]
    pub refused: bool,
    pub attempts: u32,
    pub next_ms: i64,
}

impl Alert {
    /// Whether `other` is this event (a threshold of one budget in one period), at any attempt.
    pub fn same_event(&self, other: &Alert) -> bool {
        (self.threshold, self.budget, self.period_start_ms)
            == (other.threshold, other.budget, other.period_start_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Slot {
    sec: i64,
    requests: u64,
    tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    tokens: u64,
    sec: i64,
    expires_ms: i64,
}

/// An hour bucket being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Gathered {
    totals: Totals,
    last_ms: i64,
}

/// Everything one object counts, serialized whole into its storage.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ledger {
    window: VecDeque<Slot>,
    period: Option<BudgetPeriod>,
    period_start_ms: i64,
    spent: u64,
    reservations: BTreeMap<u64, Reservation>,
    next_id: u64,
    /// Hour buckets not yet flushed, by (source, hour start); a list in JSON, whose object keys
    /// must be strings.
    #[serde(with = "as_pairs")]
    pending: BTreeMap<(Source, i64), Gathered>,
    /// Thresholds already raised in the current period, for the budget and period start in
    /// `alerted_for`: a changed budget raises its own alerts.
    alerted: Vec<u8>,
    #[serde(default)]
    alerted_for: (u64, i64),
    outbox: Vec<Alert>,
    /// Whose ledger this is, as the relay names it with each operation: what an alert is about.
    #[serde(default)]
    owner: Option<Scope>,
}

/// A map stored as the list of its entries.
mod as_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// The first millisecond of the period holding `now_ms` (UTC); 0 for `total`.
pub fn period_start(period: BudgetPeriod, now_ms: i64) -> i64 {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(now_ms) else {
        return 0;
    };
    let day = t.date_naive();
    let start = match period {
        BudgetPeriod::Total => return 0,
        BudgetPeriod::Day => day,
        BudgetPeriod::Week => day - Duration::days(day.weekday().num_days_from_monday().into()),
        BudgetPeriod::Month => day.with_day(1).unwrap_or(day),
    };
    midnight(start)
}

/// The first millisecond after the period starting at `start_ms`; `None` for `total`.
pub fn period_end(period: BudgetPeriod, start_ms: i64) -> Option<i64> {
    let start = DateTime::<Utc>::from_timestamp_millis(start_ms)?.date_naive();
    let end = match period {
        BudgetPeriod::Total => return None,
        BudgetPeriod::Day => start + Duration::days(1),
        BudgetPeriod::Week => start + Duration::days(7),
        BudgetPeriod::Month => {
            let (y, m) = if start.month() == 12 {
                (start.year() + 1, 1)
            } else {
                (start.year(), start.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)?
        }
    };
    Some(midnight(end))
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0)
}

fn seconds_until(at_ms: i64, now_ms: i64) -> u64 {
    // Rounded up and at least 1: a client that waits what it is told is never early.
    u64::try_from((at_ms - now_ms).max(1))
        .unwrap_or(1)
        .div_ceil(1000)
}

impl Ledger {
    /// Tokens settled in the current period.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Tokens held by reservations neither settled nor released.
    pub fn reserved(&self) -> u64 {
        self.reservations.values().map(|r| r.tokens).sum()
    }

    /// The start of the current budget period (0 before any, or for `total`).
    pub fn period_start_ms(&self) -> i64 {
        self.period_start_ms
    }

    /// Requests and tokens in the live window at `now_ms`.
    pub fn window(&self, now_ms: i64) -> (u64, u64) {
        let from = now_ms.div_euclid(1000) - WINDOW_S + 1;
        self.window
            .iter()
            .filter(|s| s.sec >= from)
            .fold((0, 0), |(r, t), s| (r + s.requests, t + s.tokens))
    }

    /// Bring the ledger to `now_ms` under `limits`: drop slots out of the window, expire
    /// reservations left behind, start a new period at its boundary. A changed period starts
    /// the new kind's current period and keeps the spend (see the README's rule).
    fn advance(&mut self, limits: &Limits, now_ms: i64) {
        let from = now_ms.div_euclid(1000) - WINDOW_S + 1;
        while self.window.front().is_some_and(|s| s.sec < from) {
            self.window.pop_front();
        }
        self.reservations.retain(|_, r| r.expires_ms > now_ms);
        // The period is followed even without a budget, so one set mid-period starts from the
        // period's spend so far.
        let start = period_start(limits.period, now_ms);
        match self.period {
            Some(p) if p == limits.period => {
                if period_end(p, self.period_start_ms).is_some_and(|end| now_ms >= end) {
                    self.spent = 0;
                    self.alerted.clear();
                    // An ended period's alerts are moot (and the outbox stays bounded).
                    self.outbox.clear();
                    self.period_start_ms = start;
                }
            }
            _ => {
                self.period = Some(limits.period);
                self.period_start_ms = start;
            }
        }
    }

    fn slot(&mut self, sec: i64) -> &mut Slot {
        if self.window.back().is_none_or(|s| s.sec != sec) {
            self.window.push_back(Slot {
                sec,
                requests: 0,
                tokens: 0,
            });
        }
        // Just pushed or just checked.
        let last = self.window.len() - 1;
        &mut self.window[last]
    }

    /// The seconds until the oldest slots leave the window far enough that `fits` holds.
    fn window_frees(&self, now_ms: i64, fits: impl Fn(u64, u64) -> bool) -> u64 {
        let (mut requests, mut tokens) = self.window(now_ms);
        let from = now_ms.div_euclid(1000) - WINDOW_S + 1;
        for s in self.window.iter().filter(|s| s.sec >= from) {
            requests -= s.requests;
            tokens -= s.tokens;
            if fits(requests, tokens) {
                return seconds_until((s.sec + WINDOW_S) * 1000, now_ms);
            }
        }
        WINDOW_S as u64
    }

    /// Reserve `ask` under `limits` at `now_ms`.
    pub fn reserve(&mut self, limits: &Limits, ask: &Ask, now_ms: i64) -> Decision {
        self.advance(limits, now_ms);
        let (requests, tokens) = self.window(now_ms);
        let mut over: Option<(Exceeded, Option<u64>)> = None;
        if limits.tpm > 0 && ask.tokens > limits.tpm {
            return self.too_large(Exceeded::Tpm, limits.tpm, ask, limits, now_ms);
        }
        if limits.budget > 0 && ask.tokens > limits.budget {
            return self.too_large(Exceeded::Budget, limits.budget, ask, limits, now_ms);
        }
        if limits.rpm > 0 && requests + 1 > limits.rpm {
            let wait = self.window_frees(now_ms, |r, _| r < limits.rpm);
            over = Some((Exceeded::Rpm, Some(wait)));
        } else if limits.tpm > 0 && tokens + ask.tokens > limits.tpm {
            let wait = self.window_frees(now_ms, |_, t| t + ask.tokens <= limits.tpm);
            over = Some((Exceeded::Tpm, Some(wait)));
        } else if limits.budget > 0 && self.spent + self.reserved() + ask.tokens > limits.budget {
            let wait = if self.spent + ask.tokens <= limits.budget {
                // Only calls in flight hold the rest; they settle (or expire) soon.
                Some(1)
            } else {
                // What is left of the period's budget cannot carry this call: as spent as it
                // gets under `reject`, so the thresholds not yet raised are raised now.
                if limits.policy == UsagePolicy::Reject {
                    self.raise_alerts_as(limits, now_ms, true);
                }
                period_end(limits.period, self.period_start_ms).map(|e| seconds_until(e, now_ms))
            };
            over = Some((Exceeded::Budget, wait));
        }
        if let (Some((exceeded, retry_after)), UsagePolicy::Reject) = (over, limits.policy) {
            self.count_rejected(&ask.source, now_ms);
            return Decision::Refused {
                exceeded,
                retry_after,
            };
        }
        let sec = now_ms.div_euclid(1000);
        let slot = self.slot(sec);
        slot.requests += 1;
        slot.tokens += ask.tokens;
        self.next_id += 1;
        let id = self.next_id;
        self.reservations.insert(
            id,
            Reservation {
                tokens: ask.tokens,
                sec,
                expires_ms: now_ms + RESERVATION_TTL_MS,
            },
        );
        Decision::Admitted {
            id,
            exceeded: over.map(|(e, _)| e),
        }
    }

    fn too_large(
        &mut self,
        exceeded: Exceeded,
        limit: u64,
        ask: &Ask,
        limits: &Limits,
        now_ms: i64,
    ) -> Decision {
        match limits.policy {
            UsagePolicy::Reject => {
                self.count_rejected(&ask.source, now_ms);
                Decision::TooLarge { exceeded, limit }
            }
            UsagePolicy::UseAnyway => {
                let relaxed = Limits {
                    policy: UsagePolicy::UseAnyway,
                    ..*limits
                };
                match self.reserve(
                    &Limits {
                        tpm: 0,
                        budget: 0,
                        ..relaxed
                    },
                    ask,
                    now_ms,
                ) {
                    Decision::Admitted { id, .. } => Decision::Admitted {
                        id,
                        exceeded: Some(exceeded),
                    },
                    other => other,
                }
            }
        }
    }

    fn count_rejected(&mut self, source: &Source, now_ms: i64) {
        let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let g = self.pending.entry((source.clone(), hour)).or_default();
        g.totals.rejected += 1;
    }

    /// Settle reservation `id` with what the provider reported: the spend and the window count
    /// what was used, above or below the reservation. A reservation that expired (or was never
    /// made here, as for a call this ledger only records) still charges what was used. With a
    /// `record`, the call's usage is gathered here for the history and counters (one ledger
    /// records each call).
    pub fn settle(
        &mut self,
        limits: &Limits,
        id: u64,
        used: Used,
        record: Option<&Source>,
        now_ms: i64,
    ) {
        self.advance(limits, now_ms);
        let total = used.input + used.output;
        match self.reservations.remove(&id) {
            Some(r) => {
                if let Some(s) = self.window.iter_mut().find(|s| s.sec == r.sec) {
                    s.tokens = s.tokens.saturating_sub(r.tokens) + total;
                }
            }
            None => {
                let slot = self.slot(now_ms.div_euclid(1000));
                slot.tokens += total;
            }
        }
        self.spent += total;
        if let Some(source) = record {
            let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
            let g = self.pending.entry((source.clone(), hour)).or_default();
            g.totals.add(&Totals {
                requests: 1,
                input_tokens: used.input,
                output_tokens: used.output,
                rejected: 0,
            });
            g.last_ms = g.last_ms.max(now_ms);
        }
        self.raise_alerts(limits, now_ms);
    }

    /// Release reservation `id` unused (the call failed before any answer): its tokens leave the
    /// window and the budget; the request still counts against the requests per minute.
    pub fn release(&mut self, limits: &Limits, id: u64, now_ms: i64) {
        self.advance(limits, now_ms);
        if let Some(r) = self.reservations.remove(&id) {
            if let Some(s) = self.window.iter_mut().find(|s| s.sec == r.sec) {
                s.tokens = s.tokens.saturating_sub(r.tokens);
            }
        }
    }

    fn raise_alerts(&mut self, limits: &Limits, now_ms: i64) {
        self.raise_alerts_as(limits, now_ms, false);
    }

    /// Raise each threshold the spend has reached, or with `refused` (a call the rest of the
    /// budget could not carry was refused) every threshold not raised yet.
    fn raise_alerts_as(&mut self, limits: &Limits, now_ms: i64, refused: bool) {
        if limits.budget == 0 {
            return;
        }
        let this = (limits.budget, self.period_start_ms);
        if self.alerted_for != this {
            self.alerted.clear();
            self.alerted_for = this;
        }
        for threshold in THRESHOLDS {
            let reached = refused || self.spent * 100 >= limits.budget * u64::from(threshold);
            if reached && !self.alerted.contains(&threshold) {
                self.alerted.push(threshold);
                self.outbox.push(Alert {
                    threshold,
                    period: limits.period,
                    period_start_ms: self.period_start_ms,
                    budget: limits.budget,
                    spent: self.spent,
                    at_ms: now_ms,
                    refused,
                    attempts: 0,
                    next_ms: now_ms,
                });
            }
        }
    }

    /// Alerts whose delivery is due at `now_ms`.
    pub fn alerts_due(&self, now_ms: i64) -> Vec<Alert> {
        self.outbox
            .iter()
            .filter(|a| a.next_ms <= now_ms)
            .cloned()
            .collect()
    }

    /// Record one delivery attempt of `alert` (as [`Ledger::alerts_due`] gave it): delivered
    /// (or nowhere to deliver it), or failed, tried again `retry_ms` later, then twice, four and
    /// eight times that, up to [`ALERT_ATTEMPTS`] in all. Returns whether it stays queued.
    pub fn alert_attempted(
        &mut self,
        alert: &Alert,
        delivered: bool,
        now_ms: i64,
        retry_ms: i64,
    ) -> bool {
        let Some(i) = self.outbox.iter().position(|a| a.same_event(alert)) else {
            return false;
        };
        let a = &mut self.outbox[i];
        a.attempts += 1;
        if delivered || a.attempts >= ALERT_ATTEMPTS {
            self.outbox.remove(i);
            return false;
        }
        a.next_ms = now_ms + retry_ms.max(0) * (1 << (a.attempts - 1));
        true
    }

    /// Name the ledger's owner (the relay sends it with every operation).
    pub fn own(&mut self, scope: &Scope) {
        if self.owner.as_ref() != Some(scope) {
            self.owner = Some(scope.clone());
        }
    }

    /// Whose ledger this is, once an operation has named it.
    pub fn owner(&self) -> Option<&Scope> {
        self.owner.as_ref()
    }

    /// Hand over the hour buckets gathered since the last flush, with the day buckets they add
    /// up to, and forget them.
    pub fn take_flush(&mut self) -> Flush {
        let pending = std::mem::take(&mut self.pending);
        let mut days: BTreeMap<(Source, i64), Gathered> = BTreeMap::new();
        let hours = pending
            .into_iter()
            .map(|((source, start_ms), g)| {
                let day = start_ms.div_euclid(DAY_MS) * DAY_MS;
                let d = days.entry((source.clone(), day)).or_default();
                d.totals.add(&g.totals);
                d.last_ms = d.last_ms.max(g.last_ms);
                Bucket {
                    source,
                    start_ms,
                    totals: g.totals,
                    last_ms: g.last_ms,
                }
            })
            .collect();
        let days = days
            .into_iter()
            .map(|((source, start_ms), g)| Bucket {
                source,
                start_ms,
                totals: g.totals,
                last_ms: g.last_ms,
            })
            .collect();
        Flush { hours, days }
    }

    /// Put back buckets a flush could not write, so nothing is lost.
    pub fn restore(&mut self, flush: Flush) {
        for b in flush.hours {
            let g = self.pending.entry((b.source, b.start_ms)).or_default();
            g.totals.add(&b.totals);
            g.last_ms = g.last_ms.max(b.last_ms);
        }
    }

    /// Whether anything waits to be flushed or delivered.
    pub fn has_pending(&self) -> bool {
        self.has_usage() || !self.outbox.is_empty()
    }

    /// Whether gathered usage waits to be flushed.
    pub fn has_usage(&self) -> bool {
        !self.pending.is_empty()
    }

    /// When the owner should wake next: the earliest alert retry, if any.
    pub fn next_alert_ms(&self) -> Option<i64> {
        self.outbox.iter().map(|a| a.next_ms).min()
    }
}

/// One operation on a ledger, as the relay sends it to the object that owns the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Reserve {
        limits: Limits,
        ask: Ask,
    },
    Settle {
        limits: Limits,
        id: u64,
        used: Used,
        /// Set on the one ledger that records the call.
        record: Option<Source>,
    },
    Release {
        limits: Limits,
        id: u64,
    },
}

impl Ledger {
    /// Apply `op` at `now_ms`: a reservation's decision, `None` for a settlement or a release.
    pub fn apply(&mut self, op: &Op, now_ms: i64) -> Option<Decision> {
        match op {
            Op::Reserve { limits, ask } => Some(self.reserve(limits, ask, now_ms)),
            Op::Settle {
                limits,
                id,
                used,
                record,
            } => {
                self.settle(limits, *id, *used, record.as_ref(), now_ms);
                None
            }
            Op::Release { limits, id } => {
                self.release(limits, *id, now_ms);
                None
            }
        }
    }
}

/// Whose ledger: a gateway key's or a tenant's (one object each, named by this text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    Key { tenant_id: String, key_id: String },
    Tenant { tenant_id: String },
}

impl Scope {
    /// The object's name (`idFromName`): stable, and different for every key and tenant.
    pub fn name(&self) -> String {
        match self {
            Scope::Key { tenant_id, key_id } => format!("key:{tenant_id}:{key_id}"),
            Scope::Tenant { tenant_id } => format!("tenant:{tenant_id}"),
        }
    }
}

/// The object holding a ledger could not be reached or did not answer sensibly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable(pub String);

/// The port to the ledgers: Durable Objects in production, a map in native tests.
#[allow(async_fn_in_trait)]
pub trait Counters {
    /// Apply `op` to `scope`'s ledger, exactly once and in order with every other op on it.
    async fn apply(&self, scope: &Scope, op: Op) -> Result<Option<Decision>, Unreachable>;
}

/// What a relay call leaves to do once its answer is complete: the ledger operations, in order
/// (the first records the call), and the database writes that record it instead when that
/// ledger cannot be reached, so no call's usage is lost.
#[derive(Debug, Default)]
pub struct Settlements {
    pub ops: Vec<(Scope, Op)>,
    pub fallback: Vec<crate::store::Stmt>,
}

impl Settlements {
    /// Apply every operation; when the recording one fails, write `fallback` to `db`.
    pub async fn run(self, counters: &impl Counters, db: &impl crate::store::Db) {
        let mut recorded = true;
        for (i, (scope, op)) in self.ops.into_iter().enumerate() {
            if let Err(e) = counters.apply(&scope, op).await {
                // The reservation expires instead (RESERVATION_TTL_MS).
                log::warn!("limits: settlement in {} failed: {}", scope.name(), e.0);
                recorded &= i != 0;
            }
        }
        if !recorded && !self.fallback.is_empty() {
            if let Err(e) = db.batch(self.fallback).await {
                log::warn!("limits: the usage written instead failed: {e}");
            }
        }
    }
}

/// What the relay sends the object owning `scope`'s ledger: the operation, and whose ledger it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub scope: Scope,
    pub op: Op,
}

impl Envelope {
    /// Apply the operation to `ledger` at `now_ms`, naming its owner first.
    pub fn apply(&self, ledger: &mut Ledger, now_ms: i64) -> Option<Decision> {
        ledger.own(&self.scope);
        ledger.apply(&self.op, now_ms)
    }
}

/// Ledgers in memory, for native tests and for anything with a single thread of its own.
#[derive(Default)]
pub struct LocalCounters {
    pub ledgers: std::cell::RefCell<BTreeMap<Scope, Ledger>>,
    /// The clock the ledgers are driven with (the platform's, in tests the test clock).
    pub now_ms: std::cell::Cell<i64>,
    /// When set, every call fails as an unreachable object does.
    pub down: std::cell::Cell<bool>,
}

impl Counters for LocalCounters {
    async fn apply(&self, scope: &Scope, op: Op) -> Result<Option<Decision>, Unreachable> {
        if self.down.get() {
            return Err(Unreachable("the counters are down".into()));
        }
        let now = self.now_ms.get();
        let envelope = Envelope {
            scope: scope.clone(),
            op,
        };
        Ok(envelope.apply(
            self.ledgers.borrow_mut().entry(scope.clone()).or_default(),
            now,
        ))
    }
}

#[cfg(test)]
mod tests;
