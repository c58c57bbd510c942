//! Scheduled work: the cron purge of expired user keys and ended rotation grace periods, the
//! disabling of gateway keys past their `expire_time` (kept, with their usage counters, for the
//! record), and forgetting Idempotency-Key requests older than their window.

use crate::store::{ai_keys, idempotency, keys, Db, DbError, Platform, Stmt};

/// Rows one statement touches. Each statement binds two parameters (D1 allows 100) and deletes by
/// the primary key through an index range, far inside D1's 30 s per query.
pub const PURGE_CHUNK: i64 = 5_000;
/// Statements per kind per run, bounding one run at 100,000 rows of each kind; the next run continues.
pub const PURGE_MAX_CHUNKS: usize = 20;

/// What one purge run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    pub expired_keys: u64,
    pub ended_grace: u64,
    /// Gateway keys past their `expire_time` that were switched to `disabled`.
    pub disabled_gateway_keys: u64,
    /// Idempotency-Key requests older than [`idempotency::WINDOW_MS`], forgotten.
    pub forgotten_requests: u64,
    /// Whether a kind still had rows left when the run hit its bound.
    pub more: bool,
}

/// Run one chunked statement until it changes fewer rows than a chunk, at most
/// [`PURGE_MAX_CHUNKS`] times. Returns the rows changed and whether rows may remain.
async fn drain(db: &impl Db, chunk: impl Fn() -> Stmt) -> Result<(u64, bool), DbError> {
    let mut total = 0;
    for _ in 0..PURGE_MAX_CHUNKS {
        let n = db.execute(chunk()).await?;
        total += n;
        if n < PURGE_CHUNK as u64 {
            return Ok((total, false));
        }
    }
    Ok((total, true))
}

/// Purge what has expired by now. Idempotent; two overlapping runs may select the same rows,
/// and a row's second delete changes nothing.
pub async fn purge(platform: &impl Platform) -> Result<PurgeReport, DbError> {
    let db = platform.db();
    let now = platform.now_ms();
    let (expired_keys, more_keys) = drain(db, || keys::purge_expired(now, PURGE_CHUNK)).await?;
    let (ended_grace, more_grace) = drain(db, || keys::purge_ended_grace(now, PURGE_CHUNK)).await?;
    let (disabled_gateway_keys, more_gateway) =
        drain(db, || ai_keys::disable_expired(now, PURGE_CHUNK)).await?;
    let (forgotten_requests, more_requests) = drain(db, || {
        idempotency::purge(now - idempotency::WINDOW_MS, PURGE_CHUNK)
    })
    .await?;
    let report = PurgeReport {
        expired_keys,
        ended_grace,
        disabled_gateway_keys,
        forgotten_requests,
        more: more_keys || more_grace || more_gateway || more_requests,
    };
    log::info!(
            "purge: removed {} expired keys, cleared {} ended grace secrets, disabled {} expired gateway keys, forgot {} idempotency keys{}",
            report.expired_keys,
            report.ended_grace,
            report.disabled_gateway_keys,
            report.forgotten_requests,
            if report.more {
                "; more remain for the next run"
            } else {
                ""
            }
        );
    Ok(report)
}
