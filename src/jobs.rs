//! Scheduled work: the cron purge of expired user keys and ended rotation grace periods, the
//! disabling of gateway keys past their `expire_time` (kept, with their usage counters, for the
//! record), and forgetting Idempotency-Key requests older than their window.

use crate::store::{ai_keys, idempotency, keys, Db, DbCost, DbError, Platform, Stmt};

/// Rows one statement touches. Each statement binds two parameters (D1 allows 100) and deletes by
/// the primary key through an index range, far inside D1's 30 s per query.
pub const PURGE_CHUNK: i64 = 5_000;
/// Statements per kind per run, bounding one run at 100,000 rows of each kind; the next run continues.
pub const PURGE_MAX_CHUNKS: usize = 20;

/// What one purge run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PurgeReport {
    pub expired_keys: u64,
    pub ended_grace: u64,
    /// Gateway keys past their `expire_time` that were switched to `disabled`.
    pub disabled_gateway_keys: u64,
    /// Idempotency-Key requests older than [`idempotency::WINDOW_MS`], forgotten.
    pub forgotten_requests: u64,
    /// Whether a kind still had rows left when the run hit its bound.
    pub more: bool,
    /// What the run's statements cost the database, summed, where it reports it (D1 does).
    pub cost: Option<DbCost>,
}

impl PurgeReport {
    /// The run's log line: what it removed and, where known, what that cost D1.
    pub fn line(&self) -> String {
        let mut line = format!(
            "purge: removed {} expired keys, cleared {} ended grace secrets, disabled {} expired gateway keys, forgot {} idempotency keys",
            self.expired_keys, self.ended_grace, self.disabled_gateway_keys, self.forgotten_requests
        );
        if let Some(c) = self.cost {
            line.push_str(&format!(
                "; D1 read {} rows, wrote {} rows, {:.1} ms of SQL",
                c.rows_read, c.rows_written, c.sql_ms
            ));
        }
        if self.more {
            line.push_str("; more remain for the next run");
        }
        line
    }
}

/// What [`drain`] did: rows changed, whether rows may remain, and the statements' cost.
struct Drained {
    rows: u64,
    more: bool,
    cost: Option<DbCost>,
}

/// Run one chunked statement until it changes fewer rows than a chunk, at most
/// [`PURGE_MAX_CHUNKS`] times.
async fn drain(db: &impl Db, chunk: impl Fn() -> Stmt) -> Result<Drained, DbError> {
    let mut rows = 0;
    let mut costs = Vec::new();
    for _ in 0..PURGE_MAX_CHUNKS {
        let m = db.execute_metered(chunk()).await?;
        rows += m.changes;
        costs.push(m.cost);
        if m.changes < PURGE_CHUNK as u64 {
            return Ok(Drained {
                rows,
                more: false,
                cost: DbCost::total(costs),
            });
        }
    }
    Ok(Drained {
        rows,
        more: true,
        cost: DbCost::total(costs),
    })
}

/// Purge what has expired by now. Idempotent; two overlapping runs may select the same rows,
/// and a row's second delete changes nothing.
pub async fn purge(platform: &impl Platform) -> Result<PurgeReport, DbError> {
    let db = platform.db();
    let now = platform.now_ms();
    let keys = drain(db, || keys::purge_expired(now, PURGE_CHUNK)).await?;
    let grace = drain(db, || keys::purge_ended_grace(now, PURGE_CHUNK)).await?;
    let gateway = drain(db, || ai_keys::disable_expired(now, PURGE_CHUNK)).await?;
    let requests = drain(db, || {
        idempotency::purge(now - idempotency::WINDOW_MS, PURGE_CHUNK)
    })
    .await?;
    let report = PurgeReport {
        expired_keys: keys.rows,
        ended_grace: grace.rows,
        disabled_gateway_keys: gateway.rows,
        forgotten_requests: requests.rows,
        more: keys.more || grace.more || gateway.more || requests.more,
        cost: DbCost::total([keys.cost, grace.cost, gateway.cost, requests.cost]),
    };
    log::info!("{}", report.line());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_is_summed_only_when_every_statement_reports_one() {
        let a = DbCost {
            rows_read: 3,
            rows_written: 10,
            sql_ms: 0.5,
        };
        let b = DbCost {
            rows_read: 1,
            rows_written: 0,
            sql_ms: 0.25,
        };
        let sum = DbCost::total([Some(a), Some(b)]).unwrap();
        assert_eq!((sum.rows_read, sum.rows_written), (4, 10));
        assert!((sum.sql_ms - 0.75).abs() < 1e-9);
        assert_eq!(DbCost::total([Some(a), None]), None);
        assert_eq!(DbCost::total([]), Some(DbCost::default()));
    }

    #[test]
    fn the_log_line_names_what_was_removed_and_what_it_cost() {
        let mut r = PurgeReport {
            expired_keys: 1000,
            ended_grace: 2,
            disabled_gateway_keys: 0,
            forgotten_requests: 7,
            more: false,
            cost: None,
        };
        assert_eq!(
            r.line(),
            "purge: removed 1000 expired keys, cleared 2 ended grace secrets, disabled 0 expired \
             gateway keys, forgot 7 idempotency keys"
        );
        r.cost = Some(DbCost {
            rows_read: 2014,
            rows_written: 6004,
            sql_ms: 41.26,
        });
        r.more = true;
        assert!(r.line().ends_with(
            "forgot 7 idempotency keys; D1 read 2014 rows, wrote 6004 rows, 41.3 ms of SQL; \
             more remain for the next run"
        ));
    }
}
