//! Scheduled work: the cron purge of expired user keys and ended rotation grace periods, and the
//! disabling of gateway keys past their `expire_time` (kept, with their usage counters, for the record).

use crate::api::App;
use crate::store::{ai_keys, keys, Db, DbError, Platform};

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
    /// Whether a kind still had rows left when the run hit its bound.
    pub more: bool,
}

impl<P: Platform> App<P> {
    /// Purge what has expired by now. Idempotent; two overlapping runs may select the same rows,
    /// and a row's second delete changes nothing.
    pub async fn purge(&self) -> Result<PurgeReport, DbError> {
        let now = self.platform.now_ms();
        let db = self.platform.db();
        let mut report = PurgeReport::default();
        let mut more_keys = true;
        for _ in 0..PURGE_MAX_CHUNKS {
            let n = db.execute(keys::purge_expired(now, PURGE_CHUNK)).await?;
            report.expired_keys += n;
            if n < PURGE_CHUNK as u64 {
                more_keys = false;
                break;
            }
        }
        let mut more_grace = true;
        for _ in 0..PURGE_MAX_CHUNKS {
            let n = db
                .execute(keys::purge_ended_grace(now, PURGE_CHUNK))
                .await?;
            report.ended_grace += n;
            if n < PURGE_CHUNK as u64 {
                more_grace = false;
                break;
            }
        }
        let mut more_gateway = true;
        for _ in 0..PURGE_MAX_CHUNKS {
            let n = db
                .execute(ai_keys::disable_expired(now, PURGE_CHUNK))
                .await?;
            report.disabled_gateway_keys += n;
            if n < PURGE_CHUNK as u64 {
                more_gateway = false;
                break;
            }
        }
        report.more = more_keys || more_grace || more_gateway;
        log::info!(
            "purge: removed {} expired keys, cleared {} ended grace secrets, disabled {} expired gateway keys{}",
            report.expired_keys,
            report.ended_grace,
            report.disabled_gateway_keys,
            if report.more {
                "; more remain for the next run"
            } else {
                ""
            }
        );
        Ok(report)
    }
}
