//! The ports the core needs from its platform (database, cache, clock, randomness) and the SQL that
//! uses them. The Worker glue implements the ports over D1 and KV; native tests implement them over
//! real SQLite (loading the same `schema.sql`) and an in-memory map.

pub mod ai_keys;
pub mod audit;
pub mod batch;
pub mod defaults;
pub mod idempotency;
pub mod keys;
pub mod outbound;
pub mod providers;
pub mod settings;
pub mod tenants;
pub mod usage;
pub mod users;
pub mod webhooks;
pub mod write_behind;

pub use batch::{Batch, Guard, Handle, Outcome, Pushed};
use serde_json::{Map, Value as Json};

use crate::domain::states::ClosedSet;

/// A value bound to a statement parameter. D1 and SQLite both speak these three.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One SQL statement with its bound parameters (`?1`, `?2`, ...). Every value is bound, never spliced.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub sql: &'static str,
    pub params: Vec<Value>,
    /// How this statement folds with another of the same kind, when it is a counter's update.
    pub fold: Option<&'static Fold>,
}

impl Stmt {
    pub fn new(sql: &'static str, params: Vec<Value>) -> Self {
        Stmt {
            sql,
            params,
            fold: None,
        }
    }

    /// This statement, marked as one that [`Fold`]s with its kind.
    pub fn folding(mut self, fold: &'static Fold) -> Self {
        self.fold = Some(fold);
        self
    }

    /// `other` added into this statement, when both are the same counter's update: the same
    /// SQL and fold, equal parameters outside the fold's, integers in its. Else `other` back.
    pub fn fold_in(&mut self, other: Stmt) -> Result<(), Stmt> {
        let Some(fold) = self.fold.filter(|f| other.fold == Some(*f)) else {
            return Err(other);
        };
        let folded = |i: usize| fold.sum.contains(&i) || fold.max.contains(&i);
        let same = self.sql == other.sql
            && self.params.len() == other.params.len()
            && self
                .params
                .iter()
                .zip(&other.params)
                .enumerate()
                .all(|(i, (a, b))| {
                    if folded(i) {
                        matches!((a, b), (Value::Int(_), Value::Int(_)))
                    } else {
                        a == b
                    }
                });
        if !same {
            return Err(other);
        }
        for (i, b) in other.params.into_iter().enumerate() {
            if let (Value::Int(a), Value::Int(b)) = (&mut self.params[i], b) {
                if fold.sum.contains(&i) {
                    *a = a.saturating_add(b);
                } else if fold.max.contains(&i) {
                    *a = (*a).max(b);
                }
            }
        }
        Ok(())
    }
}

/// A counter's update that two calls may make as one: the parameters (0-based) at `sum` are
/// added, those at `max` take the larger (a last-use time that never moves backwards), and the
/// statements fold only when every other parameter is equal (the same row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fold {
    pub sum: &'static [usize],
    pub max: &'static [usize],
}

/// `stmts` with every counter's update folded into the first of its kind (the others keep their
/// order): for writes whose order does not matter, as deferred counters' are.
pub fn fold_all(stmts: impl IntoIterator<Item = Stmt>) -> Vec<Stmt> {
    let mut out: Vec<Stmt> = Vec::new();
    'next: for s in stmts {
        let mut s = s;
        if s.fold.is_some() {
            for o in out.iter_mut() {
                match o.fold_in(s) {
                    Ok(()) => continue 'next,
                    Err(back) => s = back,
                }
            }
        }
        out.push(s);
    }
    out
}

/// Build a [`Stmt`] from SQL and any values convertible to [`Value`].
#[macro_export]
macro_rules! stmt {
    ($sql:expr $(, $p:expr)* $(,)?) => {
        $crate::store::Stmt::new($sql, vec![$($crate::store::Value::from($p)),*])
    };
}

/// The caller's tenant in a statement read in the same round trip as the caller's key
/// ([`Db::query_batch`]): `?1` when the caller is already known (a verification cache hit), else
/// the tenant of the key with access key `?2` whose secret hashes to `?3` (the current secret, or
/// the previous one within its grace at `?4`). A secret that matches neither gives NULL, so a
/// statement batched with a failed verification reads no row at all. Every such statement binds
/// these four first ([`CallerTenant::params`]) and its own values from `?5` on.
#[macro_export]
macro_rules! caller_tenant {
    () => {
        "COALESCE(?1, (SELECT ck.tenant_id FROM api_keys ck WHERE ck.access_key = ?2 \
         AND (ck.secret_hash = ?3 OR (ck.prev_secret_hash = ?3 AND ck.prev_valid_until > ?4))))"
    };
}

/// Whose tenant a statement batched with verification reads; see [`caller_tenant!`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallerTenant<'a> {
    /// The caller is already known (a verification cache hit): its tenant.
    Known(&'a str),
    /// The key presented, as the verification batched with the statement checks it.
    Presented {
        access_key: &'a str,
        secret_hash: &'a str,
        now: i64,
    },
}

impl CallerTenant<'_> {
    /// `?1` to `?4` of [`caller_tenant!`].
    pub fn params(&self) -> Vec<Value> {
        match *self {
            CallerTenant::Known(t) => vec![t.into(), Value::Null, Value::Null, Value::Null],
            CallerTenant::Presented {
                access_key,
                secret_hash,
                now,
            } => vec![
                Value::Null,
                access_key.into(),
                secret_hash.into(),
                now.into(),
            ],
        }
    }

    /// A statement of [`caller_tenant!`]'s kind: these four, then `more` from `?5` on.
    pub fn stmt(&self, sql: &'static str, more: impl IntoIterator<Item = Value>) -> Stmt {
        let mut params = self.params();
        params.extend(more);
        Stmt::new(sql, params)
    }
}

/// A result row, as D1 returns it: column name to JSON value.
pub type Row = Map<String, Json>;

/// Typed, strict access to row columns, tolerant only of D1 handing integers over as JS numbers
/// (f64). A column the row lacks (a SELECT that forgot it, a misspelled name) or of another type is
/// a [`DbError::Decode`], never a default: a silent empty string or zero would pass for data.
pub trait RowExt {
    /// A NOT NULL text column.
    fn text(&self, col: &str) -> Result<String, DbError>;
    /// A NOT NULL integer column.
    fn int(&self, col: &str) -> Result<i64, DbError>;
    /// A nullable text column: SQL NULL is `None`, a missing column is still an error.
    fn text_opt(&self, col: &str) -> Result<Option<String>, DbError>;
    /// A nullable integer column: SQL NULL is `None`, a missing column is still an error.
    fn int_opt(&self, col: &str) -> Result<Option<i64>, DbError>;
    /// A NOT NULL text column holding one value of a closed set; any other text is an error.
    fn closed<T: ClosedSet>(&self, col: &str) -> Result<T, DbError> {
        self.closed_opt(col)?
            .ok_or_else(|| not_in_set(col, None, T::NAME))
    }
    /// A nullable text column holding one value of a closed set.
    fn closed_opt<T: ClosedSet>(&self, col: &str) -> Result<Option<T>, DbError> {
        match self.text_opt(col)? {
            None => Ok(None),
            Some(s) => T::from_text(&s)
                .map(Some)
                .ok_or_else(|| not_in_set(col, Some(&s), T::NAME)),
        }
    }
}

/// The decode error of a closed-set column (one function, not one per set, for the bundle).
#[cold]
fn not_in_set(col: &str, text: Option<&str>, set: &str) -> DbError {
    DbError::Decode(match text {
        Some(s) => format!("column {col} holds {s:?}, not a {set}"),
        None => format!("column {col} is NULL, {set} expected"),
    })
}

fn column<'r>(row: &'r Row, col: &str) -> Result<&'r Json, DbError> {
    row.get(col)
        .ok_or_else(|| DbError::Decode(format!("row has no column {col}")))
}

fn as_int(v: &Json) -> Option<i64> {
    // D1 hands integers over as JS numbers; only integral ones within f64's exact range count.
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            .map(|f| f as i64)
    })
}

impl RowExt for Row {
    fn text(&self, col: &str) -> Result<String, DbError> {
        self.text_opt(col)?
            .ok_or_else(|| DbError::Decode(format!("column {col} is NULL, text expected")))
    }
    fn int(&self, col: &str) -> Result<i64, DbError> {
        self.int_opt(col)?
            .ok_or_else(|| DbError::Decode(format!("column {col} is NULL, integer expected")))
    }
    fn text_opt(&self, col: &str) -> Result<Option<String>, DbError> {
        match column(self, col)? {
            Json::Null => Ok(None),
            Json::String(s) => Ok(Some(s.clone())),
            _ => Err(DbError::Decode(format!("column {col} is not text"))),
        }
    }
    fn int_opt(&self, col: &str) -> Result<Option<i64>, DbError> {
        match column(self, col)? {
            Json::Null => Ok(None),
            v => as_int(v)
                .map(Some)
                .ok_or_else(|| DbError::Decode(format!("column {col} is not an integer"))),
        }
    }
}

/// Decode every row with `f`, failing on the first that does not decode.
pub fn decode_all<T>(
    rows: &[Row],
    f: impl Fn(&Row) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    rows.iter().map(f).collect()
}

/// Decode the first row with `f`, if there is one.
pub fn decode_first<T>(
    rows: &[Row],
    f: impl Fn(&Row) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    rows.first().map(f).transpose()
}

/// What went wrong talking to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum DbError {
    /// A UNIQUE constraint failed; carries SQLite's text (e.g. `UNIQUE constraint failed: users.username`).
    Unique(String),
    /// A FOREIGN KEY constraint failed: a row pointed at something that is gone.
    ForeignKey(String),
    /// A row that does not have the shape its reader expects (a missing, misspelled or mistyped
    /// column): a defect of the code, answered 500; details are for the log only.
    Decode(String),
    /// Anything else; details are for the log only.
    Other(String),
}

impl DbError {
    /// Classify an error message from SQLite or D1 (both carry SQLite's wording).
    pub fn from_message(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        if msg.contains("UNIQUE constraint failed") {
            DbError::Unique(msg)
        } else if msg.contains("FOREIGN KEY constraint failed") {
            DbError::ForeignKey(msg)
        } else {
            DbError::Other(msg)
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unique(m) | DbError::ForeignKey(m) | DbError::Other(m) => f.write_str(m),
            DbError::Decode(m) => write!(f, "row decoding: {m}"),
        }
    }
}

/// What a write statement did: the rows it changed and, where the database reports it, its cost.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Metered {
    pub changes: u64,
    pub cost: Option<DbCost>,
}

/// What D1 reports a statement cost: the rows it read and wrote, as D1 counts and bills them, and
/// its SQL time inside the database, without the network.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct DbCost {
    pub rows_read: u64,
    pub rows_written: u64,
    pub sql_ms: f64,
}

impl DbCost {
    /// The sum of two statements' costs.
    pub fn plus(self, other: DbCost) -> DbCost {
        DbCost {
            rows_read: self.rows_read + other.rows_read,
            rows_written: self.rows_written + other.rows_written,
            sql_ms: self.sql_ms + other.sql_ms,
        }
    }

    /// Costs summed over statements: known only when every statement's is.
    pub fn total(costs: impl IntoIterator<Item = Option<DbCost>>) -> Option<DbCost> {
        costs
            .into_iter()
            .try_fold(DbCost::default(), |sum, c| c.map(|c| sum.plus(c)))
    }
}

/// The relational store: D1 in production, SQLite in native tests.
#[allow(async_fn_in_trait)]
pub trait Db {
    /// Run one statement and return its rows.
    async fn query(&self, stmt: Stmt) -> Result<Vec<Row>, DbError>;
    /// Run one statement and return how many rows it changed.
    async fn execute(&self, stmt: Stmt) -> Result<u64, DbError>;
    /// [`Db::execute`], with what the database reports it read and wrote for the statement.
    /// This default reports only the changed rows, for databases that count nothing more.
    async fn execute_metered(&self, stmt: Stmt) -> Result<Metered, DbError> {
        Ok(Metered {
            changes: self.execute(stmt).await?,
            cost: None,
        })
    }
    /// Run statements atomically (all or none) and return each one's changed-row count.
    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, DbError>;
    /// [`Db::batch`] for writes whose counts nobody reads (a port may skip decoding them).
    async fn run_batch(&self, stmts: Vec<Stmt>) -> Result<(), DbError> {
        self.batch(stmts).await.map(|_| ())
    }
    /// Run read statements in one round trip and return each one's rows, in order. D1 sends a
    /// batch as one request and runs it as one transaction, so every statement sees the same
    /// state; this default runs them one by one, for wrappers that only need [`Db::query`].
    async fn query_batch(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, DbError> {
        let mut out = Vec::with_capacity(stmts.len());
        for s in stmts {
            out.push(self.query(s).await?);
        }
        Ok(out)
    }
}

/// What went wrong talking to the cache. The core treats every cache error as a miss and logs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheError(pub String);

/// A key-value cache with TTLs: Workers KV in production, a map in native tests.
#[allow(async_fn_in_trait)]
pub trait Cache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;
    /// Store with a time to live in seconds (KV requires at least 60).
    async fn put(&self, key: &str, value: &str, ttl_seconds: u64) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
}

/// Throttles clients that keep failing to authenticate (brute force). Production counts with the
/// Workers rate-limiting binding, whose counters are per Cloudflare location.
#[allow(async_fn_in_trait)]
pub trait Limiter {
    /// Seconds `client` must still wait, if a recent run of failures blocked it. Checked before any
    /// credential work, so a blocked client learns nothing, not even from a correct guess.
    fn blocked_for(&self, client: &str, now_ms: i64) -> Option<u64>;
    /// Count one failure; `Some(seconds)` when it puts the client over its budget (now blocked).
    async fn failure(&self, client: &str, now_ms: i64) -> Option<u64>;
}

/// Everything the core takes from the platform it runs on.
pub trait Platform {
    type Db: Db;
    type Cache: Cache;
    type Outbound: outbound::Outbound;
    type Limiter: Limiter;
    type Counters: crate::limits::Counters;
    fn limiter(&self) -> &Self::Limiter;
    /// The ledgers of limits over time (a Durable Object per gateway key and per tenant).
    fn counters(&self) -> &Self::Counters;
    fn db(&self) -> &Self::Db;
    fn cache(&self) -> &Self::Cache;
    fn outbound(&self) -> &Self::Outbound;
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Fill `buf` with cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::states::{KeyStatus, Role};

    const COUNTER: Fold = Fold {
        sum: &[1],
        max: &[2],
    };

    fn counter(row: &str, n: i64, at: i64) -> Stmt {
        crate::stmt!(
            "UPDATE c SET n = n + ?2, at = MAX(at, ?3) WHERE id = ?1",
            row,
            n,
            at
        )
        .folding(&COUNTER)
    }

    #[test]
    fn a_counters_updates_of_one_row_fold_adding_their_sums_and_keeping_the_latest() {
        let folded = fold_all([
            counter("a", 1, 10),
            crate::stmt!("DELETE FROM x WHERE id = ?1", "k"),
            counter("b", 5, 5),
            counter("a", 2, 30),
            counter("a", 4, 20),
        ]);
        assert_eq!(
            folded,
            vec![
                counter("a", 7, 30),
                crate::stmt!("DELETE FROM x WHERE id = ?1", "k"),
                counter("b", 5, 5),
            ]
        );
    }

    #[test]
    fn statements_fold_only_with_their_own_kind_and_row() {
        // Not marked: never folded, even when equal.
        let plain = || crate::stmt!("UPDATE c SET n = n + ?2 WHERE id = ?1", "a", 1);
        assert_eq!(fold_all([plain(), plain()]).len(), 2);
        // Another SQL text, or another fold, with the same parameters.
        let mut other = counter("a", 1, 1);
        other.sql = "UPDATE d SET n = n + ?2, at = MAX(at, ?3) WHERE id = ?1";
        assert_eq!(fold_all([counter("a", 1, 1), other]).len(), 2);
        let refold = counter("a", 1, 1).folding(&Fold {
            sum: &[1, 2],
            max: &[],
        });
        assert_eq!(fold_all([counter("a", 1, 1), refold]).len(), 2);
        // A summed parameter that is not an integer.
        let text = crate::stmt!(
            "UPDATE c SET n = n + ?2, at = MAX(at, ?3) WHERE id = ?1",
            "a",
            "1",
            1
        )
        .folding(&COUNTER);
        assert_eq!(fold_all([counter("a", 1, 1), text]).len(), 2);
        // Sums that would overflow stop at the largest integer rather than wrap.
        assert_eq!(
            fold_all([counter("a", i64::MAX, 1), counter("a", 1, 1)]),
            vec![counter("a", i64::MAX, 1)]
        );
    }

    fn row(v: Json) -> Row {
        let mut r = Row::new();
        r.insert("c".into(), v);
        r
    }

    #[test]
    fn a_closed_set_column_decodes_its_values_and_refuses_any_other_text() {
        assert_eq!(
            row("owner".into()).closed::<Role>("c").unwrap(),
            Role::Owner
        );
        assert_eq!(row(Json::Null).closed_opt::<Role>("c").unwrap(), None);
        for bad in [
            Json::from("Owner"),
            Json::from(""),
            Json::from(1),
            Json::Null,
        ] {
            let e = row(bad.clone()).closed::<KeyStatus>("c").unwrap_err();
            assert!(matches!(e, DbError::Decode(_)), "{bad}: {e:?}");
        }
        let DbError::Decode(m) = row("on".into()).closed::<KeyStatus>("c").unwrap_err() else {
            unreachable!()
        };
        assert_eq!(m, "column c holds \"on\", not a KeyStatus");
        assert!(row("x".into()).closed::<Role>("missing").is_err());
    }
}
