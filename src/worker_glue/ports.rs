//! The core's ports over the Workers runtime: D1, KV, `Date.now()`, `crypto.getRandomValues`, console.

use super::limiter::BindingLimiter;
use super::outbound::FetchOutbound;
use crate::store::{Cache, CacheError, Db, DbCost, DbError, Metered, Platform, Row, Stmt, Value};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1DatabaseSession, D1PreparedStatement};

/// The database, bound directly (every query at the primary), or through a D1 session that may
/// read from replicas (`D1_READ_REPLICATION`, see [`crate::api::replicas`]).
pub enum D1Db {
    Primary(D1Database),
    Session(D1DatabaseSession),
}

fn js(v: &Value) -> JsValue {
    match v {
        Value::Null => JsValue::NULL,
        // D1 binds JS numbers; every integer keyward stores (milliseconds, counts) is below 2^53.
        Value::Int(i) => JsValue::from_f64(*i as f64),
        Value::Text(s) => JsValue::from_str(s),
    }
}

fn db_err(e: worker::Error) -> DbError {
    DbError::from_message(e.to_string())
}

impl D1Db {
    fn prepare(&self, stmt: &Stmt) -> Result<D1PreparedStatement, DbError> {
        let params: Vec<JsValue> = stmt.params.iter().map(js).collect();
        let prepared = match self {
            D1Db::Primary(db) => db.prepare(stmt.sql),
            D1Db::Session(s) => s.prepare(stmt.sql),
        };
        prepared.bind(&params).map_err(db_err)
    }

    /// Every statement in one request to D1 (a batch, one transaction), however many there are.
    async fn send_batch(&self, stmts: &[Stmt]) -> Result<Vec<worker::D1Result>, DbError> {
        let prepared = stmts
            .iter()
            .map(|s| self.prepare(s))
            .collect::<Result<Vec<_>, _>>()?;
        match self {
            D1Db::Primary(db) => db.batch(prepared).await,
            D1Db::Session(s) => s.batch(prepared).await,
        }
        .map_err(db_err)
    }

    /// The session's latest bookmark, for the client to send back.
    pub fn bookmark(&self) -> Option<String> {
        match self {
            D1Db::Primary(_) => None,
            D1Db::Session(s) => s.get_bookmark().ok().flatten(),
        }
    }
}

fn changes(r: &worker::D1Result) -> u64 {
    r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0) as u64
}

impl Db for D1Db {
    async fn query(&self, stmt: Stmt) -> Result<Vec<Row>, DbError> {
        let result = self.prepare(&stmt)?.all().await.map_err(db_err)?;
        result.results::<Row>().map_err(db_err)
    }

    async fn execute(&self, stmt: Stmt) -> Result<u64, DbError> {
        Ok(self.execute_metered(stmt).await?.changes)
    }

    async fn execute_metered(&self, stmt: Stmt) -> Result<Metered, DbError> {
        let result = self.prepare(&stmt)?.run().await.map_err(db_err)?;
        let meta = result.meta().ok().flatten();
        let cost = meta.as_ref().and_then(|m| {
            Some(DbCost {
                rows_read: m.rows_read? as u64,
                rows_written: m.rows_written? as u64,
                sql_ms: m.duration.unwrap_or(0.0),
            })
        });
        Ok(Metered {
            changes: meta.and_then(|m| m.changes).unwrap_or(0) as u64,
            cost,
        })
    }

    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, DbError> {
        Ok(self.send_batch(&stmts).await?.iter().map(changes).collect())
    }

    /// One batch, reading nothing of its results (no meta decoded per statement).
    async fn run_batch(&self, stmts: Vec<Stmt>) -> Result<(), DbError> {
        self.send_batch(&stmts).await.map(|_| ())
    }

    async fn query_batch(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, DbError> {
        self.send_batch(&stmts)
            .await?
            .iter()
            .map(|r| r.results::<Row>().map_err(db_err))
            .collect()
    }
}

pub struct KvCache(pub worker::kv::KvStore);

fn cache_err(e: worker::kv::KvError) -> CacheError {
    CacheError(e.to_string())
}

impl Cache for KvCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.0.get(key).text().await.map_err(cache_err)
    }
    async fn put(&self, key: &str, value: &str, ttl_seconds: u64) -> Result<(), CacheError> {
        self.0
            .put(key, value)
            .map_err(cache_err)?
            .expiration_ttl(ttl_seconds.max(60))
            .execute()
            .await
            .map_err(cache_err)
    }
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.0.delete(key).await.map_err(cache_err)
    }
}

pub struct WorkerPlatform {
    db: D1Db,
    cache: KvCache,
    outbound: FetchOutbound,
    limiter: BindingLimiter,
    counters: super::limits_object::DoCounters,
}

impl WorkerPlatform {
    /// The platform of one request over the env's bindings (the D1 database, the KV namespace,
    /// the rate limiter and the limits objects' namespace when bound); `session_start` (a
    /// bookmark or `first-unconstrained`) runs its queries in a D1 session.
    pub fn new(
        db: D1Database,
        kv: worker::kv::KvStore,
        limiter: Option<worker::RateLimiter>,
        counters: super::limits_object::DoCounters,
        session_start: Option<&str>,
    ) -> worker::Result<Self> {
        let db = match session_start {
            Some(start) => D1Db::Session(db.with_session(Some(start))?),
            None => D1Db::Primary(db),
        };
        Ok(WorkerPlatform {
            db,
            cache: KvCache(kv),
            outbound: FetchOutbound,
            limiter: BindingLimiter(limiter),
            counters,
        })
    }
}

impl Platform for WorkerPlatform {
    type Db = D1Db;
    type Cache = KvCache;
    type Outbound = FetchOutbound;
    type Limiter = BindingLimiter;
    type Counters = super::limits_object::DoCounters;
    fn limiter(&self) -> &BindingLimiter {
        &self.limiter
    }
    fn counters(&self) -> &Self::Counters {
        &self.counters
    }
    fn db(&self) -> &D1Db {
        &self.db
    }
    fn outbound(&self) -> &FetchOutbound {
        &self.outbound
    }
    fn cache(&self) -> &KvCache {
        &self.cache
    }
    fn now_ms(&self) -> i64 {
        js_sys::Date::now() as i64
    }
    fn fill_random(&self, buf: &mut [u8]) {
        // crypto.getRandomValues; failing here means the runtime has no CSPRNG, which Workers always have.
        getrandom::getrandom(buf).expect("crypto.getRandomValues is available in Workers");
    }
}

struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("[{}] {}", r.level(), r.args());
        if r.level() <= log::Level::Warn {
            worker::console_error!("{line}");
        } else {
            worker::console_log!("{line}");
        }
    }
    fn flush(&self) {}
}

static LOGGER: ConsoleLog = ConsoleLog;

/// Route the `log` facade to the Workers console (idempotent).
pub fn init_logging() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    //! What only runs on wasm32: the JS side of randomness, hashing and the D1 value conversions.
    use super::*;
    use crate::domain::keys::{parse_token, sha256_hex, Secret};
    use crate::store::RowExt;
    use wasm_bindgen_test::wasm_bindgen_test;

    fn js_random(buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("crypto.getRandomValues");
    }

    #[wasm_bindgen_test]
    fn secrets_come_from_the_js_csprng_and_parse_back() {
        let a = Secret::generate(&js_random);
        let b = Secret::generate(&js_random);
        assert_ne!(a, b);
        assert_eq!(Secret::parse(a.expose()), Some(a.clone()));
        let token = format!("kwa_0123456789abcdef:{}", a.expose());
        assert!(parse_token(&token).is_some());
        let mut bytes = [0u8; 64];
        js_random(&mut bytes);
        assert!(bytes.iter().any(|&x| x != 0));
    }

    #[wasm_bindgen_test]
    fn sha256_on_wasm_matches_the_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[wasm_bindgen_test]
    fn values_bind_as_the_js_types_d1_expects() {
        assert!(js(&Value::Null).is_null());
        assert_eq!(
            js(&Value::Text("a'b".into())).as_string().as_deref(),
            Some("a'b")
        );
        // Milliseconds since the epoch stay exact as JS numbers (below 2^53).
        assert_eq!(
            js(&Value::Int(1_795_478_400_000)).as_f64(),
            Some(1_795_478_400_000.0)
        );
    }

    #[wasm_bindgen_test]
    fn d1_rows_decode_with_integer_columns_intact() {
        let obj = js_sys::Object::new();
        js_sys::Reflect::set(&obj, &"id".into(), &"k1".into()).unwrap();
        js_sys::Reflect::set(
            &obj,
            &"expires_at".into(),
            &JsValue::from_f64(1_795_478_400_000.0),
        )
        .unwrap();
        js_sys::Reflect::set(&obj, &"last_used_at".into(), &JsValue::NULL).unwrap();
        let row: Row = serde_wasm_bindgen::from_value(obj.into()).unwrap();
        assert_eq!(row.text("id").as_deref(), Ok("k1"));
        assert_eq!(row.int("expires_at"), Ok(1_795_478_400_000));
        assert_eq!(row.int_opt("last_used_at"), Ok(None));
        // A column D1 did not return is an error, not a default.
        assert!(matches!(row.int_opt("expires"), Err(DbError::Decode(_))));
    }

    #[wasm_bindgen_test]
    fn d1_error_text_classifies_like_sqlite() {
        let e = db_err(worker::Error::JsError(
            "D1_ERROR: UNIQUE constraint failed: users.username: SQLITE_CONSTRAINT".into(),
        ));
        assert!(matches!(e, DbError::Unique(_)));
    }
}
