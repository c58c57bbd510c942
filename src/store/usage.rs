//! SQL for usage history (`usage_buckets`): the hour and day rows a flush or a single call adds
//! to, the counters a flush bumps for the calls it gathered (gateway keys, models), and the
//! reads of the history routes.

use super::ai_keys::{self, ServedBy};
use super::{providers, Db, DbError, Fold, Row, RowExt, Stmt};
use crate::limits::{Bucket, Flush, Source, Totals, Used};
use crate::stmt;
use std::collections::BTreeMap;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Add `t` to the row of `source` in the `granularity` bucket starting at `start_ms`.
fn upsert(source: &Source, granularity: &str, start_ms: i64, t: &Totals) -> Stmt {
    stmt!(
        "INSERT INTO usage_buckets (tenant_id, key_id, model, granularity, start_ms, requests, \
         input_tokens, output_tokens, rejected) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (tenant_id, granularity, start_ms, key_id, model) DO UPDATE SET \
         requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, rejected = rejected + excluded.rejected",
        &source.tenant_id,
        &source.key_id,
        &source.model,
        granularity,
        start_ms,
        n(t.requests),
        n(t.input_tokens),
        n(t.output_tokens),
        n(t.rejected)
    )
}

/// The history rows of one call recorded on its own (no object counts it): its hour and its day.
pub fn record_call(source: &Source, used: Used, now_ms: i64) -> Vec<Stmt> {
    let t = Totals {
        requests: 1,
        input_tokens: used.input,
        output_tokens: used.output,
        rejected: 0,
    };
    let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let day = now_ms.div_euclid(DAY_MS) * DAY_MS;
    // Both rows in one statement (an upsert applies to each row it inserts): one statement
    // fewer for D1 to run after every call.
    vec![stmt!(
        "INSERT INTO usage_buckets (tenant_id, key_id, model, granularity, start_ms, requests, \
         input_tokens, output_tokens, rejected) VALUES (?1, ?2, ?3, 'hour', ?4, ?6, ?7, ?8, ?9), \
         (?1, ?2, ?3, 'day', ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (tenant_id, granularity, start_ms, key_id, model) DO UPDATE SET \
         requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, rejected = rejected + excluded.rejected",
        &source.tenant_id,
        &source.key_id,
        &source.model,
        hour,
        day,
        n(t.requests),
        n(t.input_tokens),
        n(t.output_tokens),
        n(t.rejected)
    )
    // The calls of one key and model in the same hour add up into one statement.
    .folding(&Fold {
        sum: &[5, 6, 7, 8],
        max: &[],
    })]
}

/// Everything a flush writes, as one batch: every hour and day row, and per gateway key (and
/// pool member) and per connection model one counter update for all the calls gathered.
pub fn flush_stmts(flush: &Flush) -> Vec<Stmt> {
    let mut out: Vec<Stmt> = Vec::new();
    out.extend(
        flush
            .hours
            .iter()
            .map(|b| upsert(&b.source, "hour", b.start_ms, &b.totals)),
    );
    out.extend(
        flush
            .days
            .iter()
            .map(|b| upsert(&b.source, "day", b.start_ms, &b.totals)),
    );
    let mut keys: BTreeMap<(&str, u32, u32), (Totals, i64)> = BTreeMap::new();
    let mut models: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for Bucket {
        source: s,
        totals,
        last_ms,
        ..
    } in &flush.hours
    {
        if totals.requests == 0 {
            continue;
        }
        if !s.key_id.is_empty() {
            let e = keys.entry((&s.key_id, s.member, s.pool_size)).or_default();
            e.0.add_all(totals);
            e.1 = e.1.max(*last_ms);
        }
        if !s.connection_id.is_empty() {
            *models.entry((&s.connection_id, &s.llm_name)).or_default() +=
                totals.input_tokens + totals.output_tokens;
        }
    }
    for ((id, member, size), (t, last)) in keys {
        let served = ServedBy {
            index: member as usize,
            size: size.max(1) as usize,
        };
        out.push(ai_keys::add_usage_calls(
            id,
            n(t.input_tokens),
            n(t.output_tokens),
            last,
            served,
            n(t.requests),
        ));
    }
    for ((cid, name), tokens) in models {
        out.push(providers::add_usage(cid, name, n(tokens)));
    }
    out
}

/// One bucket of a history read, summed over what the filter leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub start_ms: i64,
    pub totals: Totals,
}

/// What a history read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub tenant_id: &'a str,
    pub key_id: Option<&'a str>,
    pub model: Option<&'a str>,
    pub granularity: &'static str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: i64,
    pub offset: i64,
}

macro_rules! history_where {
    () => {
        " FROM usage_buckets WHERE tenant_id = ?1 AND granularity = ?2 AND start_ms >= ?3 \
         AND start_ms < ?4 AND (?5 IS NULL OR key_id = ?5) AND (?6 IS NULL OR model = ?6)"
    };
}

fn count_of(r: &Row, col: &str) -> Result<u64, DbError> {
    r.int(col).map(|v| u64::try_from(v).unwrap_or(0))
}

/// `(buckets in all, this page)`, oldest first, each bucket summed over keys and models.
pub async fn history(db: &impl Db, q: &Query<'_>) -> Result<(i64, Vec<Point>), DbError> {
    let total = db
        .query(stmt!(
            concat!("SELECT COUNT(DISTINCT start_ms) AS n", history_where!()),
            q.tenant_id,
            q.granularity,
            q.from_ms,
            q.to_ms,
            q.key_id,
            q.model
        ))
        .await?
        .first()
        .ok_or_else(|| DbError::Decode("COUNT returned no row".into()))?
        .int("n")?;
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT start_ms, SUM(requests) AS requests, SUM(input_tokens) AS input_tokens, \
                 SUM(output_tokens) AS output_tokens, SUM(rejected) AS rejected",
                history_where!(),
                " GROUP BY start_ms ORDER BY start_ms LIMIT ?7 OFFSET ?8"
            ),
            q.tenant_id,
            q.granularity,
            q.from_ms,
            q.to_ms,
            q.key_id,
            q.model,
            q.limit,
            q.offset
        ))
        .await?;
    let points = super::decode_all(&rows, |r| {
        Ok(Point {
            start_ms: r.int("start_ms")?,
            totals: Totals {
                requests: count_of(r, "requests")?,
                input_tokens: count_of(r, "input_tokens")?,
                output_tokens: count_of(r, "output_tokens")?,
                rejected: count_of(r, "rejected")?,
            },
        })
    })?;
    Ok((total, points))
}
