//! Atomic batches whose results are read by handle, not by position, and whose "only if the
//! statement before changed rows" guards are tied to the statement they follow.
//!
//! SQLite's `changes()` reports the rows changed by the statement run just before, so a guard
//! (an audit entry written only if a delete happened, a defaults version bumped only if a
//! connection went) means something only right after the statement it watches. [`Guard`] has no
//! public constructor from a bare statement and can be added only through
//! [`Pushed::then_if_changed`], which holds the batch borrowed from the moment its statement is
//! pushed: a guard can neither come first nor after some other statement.
//!
//! ```compile_fail
//! // A guard is not a statement: it cannot be pushed on its own (so not first, nor anywhere).
//! use keyward::store::{audit, Batch};
//! let mut b = Batch::new();
//! b.push(audit::record_if_changed(1, audit::Actor::Admin, "x", "y", None, ""));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Db, DbError, Stmt};

/// Tells batches apart, so a handle of one batch is never read against another's results.
static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);

/// Statements run all or none, in order.
#[derive(Debug)]
pub struct Batch {
    id: u64,
    stmts: Vec<Stmt>,
}

/// Which statement of a batch, to read its changed-row count after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    batch: u64,
    index: usize,
}

/// A statement that acts only if the statement right before it changed rows (`changes() > 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct Guard(Stmt);

impl Guard {
    /// Only the store builds guards: `sql` must test `changes()`, which only the SQL's author
    /// can vouch for.
    pub(in crate::store) fn new(stmt: Stmt) -> Self {
        debug_assert!(stmt.sql.contains("changes()"), "a guard tests changes()");
        Guard(stmt)
    }

    /// The statement, for tests that inspect the SQL.
    pub fn stmt(&self) -> &Stmt {
        &self.0
    }
}

/// A statement just pushed, with the guards chained after it; while this lives nothing else can
/// be pushed, so each guard added through it follows exactly the statement before it.
#[derive(Debug)]
pub struct Pushed<'b> {
    batch: &'b mut Batch,
    handle: Handle,
}

impl<'b> Pushed<'b> {
    /// The handle of the statement given to [`Batch::push`] (not of its guards).
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// Add `guard` right after the last statement of this chain (the pushed statement, or the
    /// guard before): it acts only if that statement changed rows. Guards chain: an audit entry
    /// written if a delete happened, then a version bumped if the entry was written.
    pub fn then_if_changed(self, guard: Guard) -> Pushed<'b> {
        self.batch.stmts.push(guard.0);
        self
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            id: NEXT_BATCH.fetch_add(1, Ordering::Relaxed),
            stmts: Vec::new(),
        }
    }

    /// Append a statement; the returned value names it and is the only way to guard it.
    pub fn push(&mut self, stmt: Stmt) -> Pushed<'_> {
        let handle = Handle {
            batch: self.id,
            index: self.stmts.len(),
        };
        self.stmts.push(stmt);
        Pushed {
            batch: self,
            handle,
        }
    }

    /// Append statements whose counts nobody reads.
    pub fn extend(&mut self, stmts: impl IntoIterator<Item = Stmt>) {
        self.stmts.extend(stmts);
    }

    pub fn len(&self) -> usize {
        self.stmts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stmts.is_empty()
    }

    /// The statements in order, for tests that inspect a batch without running it.
    pub fn stmts(&self) -> &[Stmt] {
        &self.stmts
    }

    /// The statements in order, to run inside a larger batch (guards stay right after the
    /// statement they follow, since the order is kept).
    pub fn into_stmts(self) -> Vec<Stmt> {
        self.stmts
    }

    /// Run every statement atomically.
    pub async fn run(self, db: &impl Db) -> Result<Outcome, DbError> {
        let expected = self.stmts.len();
        let changed = db.batch(self.stmts).await?;
        if changed.len() != expected {
            // A port answering for fewer statements than it ran would make every handle lie.
            return Err(DbError::Other(format!(
                "batch of {expected} statements answered {} counts",
                changed.len()
            )));
        }
        Ok(Outcome {
            batch: self.id,
            changed,
        })
    }
}

/// What a batch did, read through the handles its statements were given.
#[derive(Debug)]
pub struct Outcome {
    batch: u64,
    changed: Vec<u64>,
}

impl Outcome {
    /// How many rows the statement behind `handle` changed.
    ///
    /// # Panics
    /// If `handle` belongs to another batch: a programming error no input can cause.
    pub fn changed(&self, handle: Handle) -> u64 {
        assert_eq!(handle.batch, self.batch, "handle of another batch");
        self.changed[handle.index]
    }

    /// Whether the statement behind `handle` changed any row.
    pub fn did_change(&self, handle: Handle) -> bool {
        self.changed(handle) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stmt;

    #[test]
    fn handles_name_their_statement_wherever_it_lands() {
        let mut b = Batch::new();
        b.extend([stmt!("SELECT 1"), stmt!("SELECT 2")]);
        let h = b.push(stmt!("DELETE FROM t")).handle();
        b.push(stmt!("SELECT 3"));
        assert_eq!(h.index, 2);
        let out = Outcome {
            batch: b.id,
            changed: vec![0, 0, 7, 0],
        };
        assert_eq!(out.changed(h), 7);
        assert!(out.did_change(h));
    }

    #[test]
    fn a_guard_lands_right_after_the_statement_it_watches() {
        let mut b = Batch::new();
        b.push(stmt!("SELECT 0"));
        let deleted = b
            .push(stmt!("DELETE FROM t"))
            .then_if_changed(Guard::new(stmt!(
                "INSERT INTO a SELECT 1 WHERE changes() > 0"
            )))
            .then_if_changed(Guard::new(stmt!(
                "UPDATE v SET n = n + 1 WHERE changes() > 0"
            )))
            .handle();
        assert_eq!(
            deleted.index, 1,
            "the handle names the pushed statement, not a guard"
        );
        let sql: Vec<_> = b.stmts().iter().map(|s| s.sql).collect();
        assert_eq!(
            sql,
            [
                "SELECT 0",
                "DELETE FROM t",
                "INSERT INTO a SELECT 1 WHERE changes() > 0",
                "UPDATE v SET n = n + 1 WHERE changes() > 0"
            ]
        );
    }

    #[test]
    #[should_panic(expected = "handle of another batch")]
    fn a_handle_of_another_batch_is_refused() {
        let mut one = Batch::new();
        let h = one.push(stmt!("SELECT 1")).handle();
        let two = Batch::new();
        let out = Outcome {
            batch: two.id,
            changed: vec![1],
        };
        out.changed(h);
    }
}
