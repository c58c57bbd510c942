//! The core's ports over the Workers runtime: D1, KV, `Date.now()`, `crypto.getRandomValues`, console.

use crate::store::{Cache, CacheError, Db, DbError, Platform, Row, Stmt, Value};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

pub struct D1Db(pub D1Database);

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
        self.0.prepare(stmt.sql).bind(&params).map_err(db_err)
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
        let result = self.prepare(&stmt)?.run().await.map_err(db_err)?;
        Ok(changes(&result))
    }

    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, DbError> {
        let prepared = stmts
            .iter()
            .map(|s| self.prepare(s))
            .collect::<Result<Vec<_>, _>>()?;
        let results = self.0.batch(prepared).await.map_err(db_err)?;
        Ok(results.iter().map(changes).collect())
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
}

impl WorkerPlatform {
    pub fn new(env: &Env) -> worker::Result<Self> {
        Ok(WorkerPlatform {
            db: D1Db(env.d1("DB")?),
            cache: KvCache(env.kv("CACHE")?),
        })
    }
}

impl Platform for WorkerPlatform {
    type Db = D1Db;
    type Cache = KvCache;
    fn db(&self) -> &D1Db {
        &self.db
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
