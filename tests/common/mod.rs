//! The native test platform: the whole API over real SQLite (the same schema.sql D1 runs), an
//! in-memory cache, a clock the test moves, and the OS's randomness. Ports can be wrapped to fail.
#![allow(dead_code)]

use keyward::api::http::{Request, Response};
use keyward::api::{App, Config};
use keyward::domain::crypto::{Keyring, MasterKey};
use keyward::limits::LocalCounters;
use keyward::providers::address::AddressPolicy;
use keyward::store::outbound::{
    Outbound, OutboundError, OutboundRequest, OutboundResponse, StreamingResponse,
};
use keyward::store::{Cache, CacheError, Db, DbError, Limiter, Platform, Row, Stmt, Value};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde_json::{json, Value as Json};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const SCHEMA: &str = include_str!("../../schema.sql");
/// The master key native tests seal provider credentials with.
pub const TEST_MASTER_KEY: [u8; 32] = [7; 32];
/// Builtin models this test deployment enables (one per type where the catalog has one).
pub const BUILTIN_ENABLED: &str = "@cf/meta/llama-3.1-8b-instruct,@cf/baai/bge-base-en-v1.5,@cf/baai/bge-reranker-base,@cf/openai/whisper,@cf/myshell-ai/melotts,@cf/llava-hf/llava-1.5-7b-hf";
/// 2026-11-24T00:00:00Z
pub const START_MS: i64 = 1_795_478_400_000;

/// Real SQLite with foreign keys on, as D1 has them.
pub struct SqliteDb {
    pub conn: RefCell<Connection>,
    /// Fail the nth call (1-based) to query/execute/batch with this message, once, before it runs.
    pub fail_on_call: Cell<Option<(usize, &'static str)>>,
    /// Run the nth call (1-based) to the end, committing what it writes, then fail it with this
    /// message, once: D1 committed the batch but its answer never arrived.
    pub lose_answer_on_call: Cell<Option<(usize, &'static str)>>,
    pub calls: Cell<usize>,
    /// When set, every call first yields once to the executor, so two futures driven together
    /// (`futures::join!`) run their statements alternately, as concurrent requests do on D1.
    pub yield_each_call: Cell<bool>,
    /// When set, each `execute` appends (its first SQL words, rows changed) here.
    pub trace: RefCell<Option<Vec<(String, u64)>>>,
    /// The SQL of every query run, in order (tests that prove a query is not made clear it first).
    pub queried: RefCell<Vec<&'static str>>,
    /// When set, every statement run (query, execute or each of a batch) is appended here with its
    /// parameters (tests/query_plans.rs explains each one's plan).
    pub recorded: RefCell<Option<Vec<Stmt>>>,
}

/// A future that is pending once, then ready: one turn given back to the executor.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl SqliteDb {
    pub fn new() -> Self {
        let conn = Connection::open_in_memory().expect("sqlite");
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        conn.execute_batch(SCHEMA).expect("schema.sql loads");
        SqliteDb {
            conn: RefCell::new(conn),
            fail_on_call: Cell::new(None),
            lose_answer_on_call: Cell::new(None),
            calls: Cell::new(0),
            yield_each_call: Cell::new(false),
            trace: RefCell::new(None),
            queried: RefCell::new(Vec::new()),
            recorded: RefCell::new(None),
        }
    }

    /// Count a call; fail it now if it is the one to fail before running. Returns its number.
    fn tick(&self) -> Result<usize, DbError> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        match self.fail_on_call.get() {
            Some((at, msg)) if at == n => {
                self.fail_on_call.set(None);
                Err(DbError::from_message(msg))
            }
            _ => Ok(n),
        }
    }

    /// After call `n` ran and committed: lose its answer if it is the one to lose.
    fn answer<T>(&self, n: usize, result: T) -> Result<T, DbError> {
        match self.lose_answer_on_call.get() {
            Some((at, msg)) if at == n => {
                self.lose_answer_on_call.set(None);
                Err(DbError::from_message(msg))
            }
            _ => Ok(result),
        }
    }

    fn record(&self, stmts: &[Stmt]) {
        if let Some(all) = self.recorded.borrow_mut().as_mut() {
            all.extend(stmts.iter().cloned());
        }
    }

    /// `EXPLAIN QUERY PLAN` of `stmt` with its parameters bound: each step's detail, as SQLite
    /// words it (`SEARCH api_keys USING INDEX ...`, `SCAN users`, ...).
    pub fn plan(&self, stmt: &Stmt) -> Vec<String> {
        let conn = self.conn.borrow();
        let sql = format!("EXPLAIN QUERY PLAN {}", stmt.sql);
        let mut prepared = conn.prepare(&sql).expect("explain prepares");
        let params = bind(&stmt.params);
        let rows = prepared
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                r.get::<_, String>(3)
            })
            .expect("explain runs");
        rows.map(|r| r.expect("explain row")).collect()
    }

    /// How many rows `stmt` reads now (inspection only; not counted as a call).
    pub fn rows_of(&self, stmt: &Stmt) -> usize {
        run(&self.conn.borrow(), stmt)
            .expect("statement runs")
            .0
            .len()
    }

    /// Run raw SQL (test setup and inspection only).
    pub fn sql(&self, sql: &str) {
        self.conn.borrow().execute_batch(sql).expect("test sql");
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.conn
            .borrow()
            .query_row(sql, [], |r| r.get(0))
            .expect("count query")
    }
}

/// `Number.MAX_SAFE_INTEGER`: the largest integer a JavaScript number holds exactly.
const JS_MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn bind(params: &[Value]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|p| match p {
            Value::Null => rusqlite::types::Value::Null,
            // D1 receives parameters as JavaScript numbers (worker_glue/ports.rs): beyond 2^53 an
            // integer arrives as an inexact float, so bind it as SQLite sees it there.
            Value::Int(i) if i.unsigned_abs() > JS_MAX_SAFE_INTEGER => {
                rusqlite::types::Value::Real(*i as f64)
            }
            Value::Int(i) => rusqlite::types::Value::Integer(*i),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        })
        .collect()
}

fn err(e: rusqlite::Error) -> DbError {
    DbError::from_message(e.to_string())
}

fn run(conn: &Connection, stmt: &Stmt) -> Result<(Vec<Row>, u64), DbError> {
    let mut prepared = conn.prepare(stmt.sql).map_err(err)?;
    let names: Vec<String> = prepared
        .column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let params = bind(&stmt.params);
    let mut rows = prepared
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(err)? {
        let mut row = Row::new();
        for (i, name) in names.iter().enumerate() {
            let v = match r.get_ref(i).map_err(err)? {
                ValueRef::Null => Json::Null,
                ValueRef::Integer(n) => json!(n),
                ValueRef::Real(f) => json!(f),
                ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                ValueRef::Blob(b) => json!(String::from_utf8_lossy(b)),
            };
            row.insert(name.clone(), v);
        }
        out.push(row);
    }
    drop(rows);
    drop(prepared);
    Ok((out, conn.changes()))
}

impl Db for SqliteDb {
    async fn query(&self, stmt: Stmt) -> Result<Vec<Row>, DbError> {
        if self.yield_each_call.get() {
            YieldOnce(false).await;
        }
        let n = self.tick()?;
        self.queried.borrow_mut().push(stmt.sql);
        self.record(std::slice::from_ref(&stmt));
        let rows = run(&self.conn.borrow(), &stmt)?.0;
        self.answer(n, rows)
    }

    async fn execute(&self, stmt: Stmt) -> Result<u64, DbError> {
        if self.yield_each_call.get() {
            YieldOnce(false).await;
        }
        let n = self.tick()?;
        self.record(std::slice::from_ref(&stmt));
        let changed = run(&self.conn.borrow(), &stmt)?.1;
        if let Some(trace) = self.trace.borrow_mut().as_mut() {
            let words: Vec<&str> = stmt.sql.split_whitespace().take(3).collect();
            trace.push((words.join(" "), changed));
        }
        self.answer(n, changed)
    }

    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, DbError> {
        if self.yield_each_call.get() {
            YieldOnce(false).await;
        }
        let n = self.tick()?;
        self.record(&stmts);
        let mut conn = self.conn.borrow_mut();
        let tx = conn.transaction().map_err(err)?;
        let mut changes = Vec::new();
        for s in &stmts {
            // A statement that changes nothing (e.g. SELECT) reports 0, as D1 does.
            let before = tx.total_changes();
            run(&tx, s)?;
            changes.push(tx.total_changes() - before);
        }
        tx.commit().map_err(err)?;
        drop(conn);
        self.answer(n, changes)
    }

    /// One call (one round trip, as D1's batch is), every statement in one transaction.
    async fn query_batch(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, DbError> {
        if self.yield_each_call.get() {
            YieldOnce(false).await;
        }
        let n = self.tick()?;
        self.queried
            .borrow_mut()
            .extend(stmts.iter().map(|s| s.sql));
        self.record(&stmts);
        let mut conn = self.conn.borrow_mut();
        let tx = conn.transaction().map_err(err)?;
        let mut out = Vec::with_capacity(stmts.len());
        for s in &stmts {
            out.push(run(&tx, s)?.0);
        }
        tx.commit().map_err(err)?;
        drop(conn);
        self.answer(n, out)
    }
}

/// An in-memory cache with TTLs against the test clock; can be told to fail.
#[derive(Default)]
pub struct MemCache {
    pub map: RefCell<HashMap<String, (String, i64)>>,
    pub failing: Cell<bool>,
    pub now: Cell<i64>,
}

impl Cache for MemCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        if self.failing.get() {
            return Err(CacheError("injected cache failure".into()));
        }
        let now = self.now.get();
        Ok(self
            .map
            .borrow()
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone()))
    }
    async fn put(&self, key: &str, value: &str, ttl_seconds: u64) -> Result<(), CacheError> {
        if self.failing.get() {
            return Err(CacheError("injected cache failure".into()));
        }
        let exp = self.now.get() + ttl_seconds as i64 * 1000;
        self.map
            .borrow_mut()
            .insert(key.to_owned(), (value.to_owned(), exp));
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        if self.failing.get() {
            return Err(CacheError("injected cache failure".into()));
        }
        self.map.borrow_mut().remove(key);
        Ok(())
    }
}

/// Outbound HTTP with a real client (ureq), so provider calls cross a real socket to a stand-in.
pub struct HttpOutbound;

/// An answer's status, headers and body reader.
type Exchanged = (u16, Vec<(String, String)>, Box<dyn Read + Send + Sync>);
/// A streamed answer's status, headers and body.
type StreamExchanged = (u16, Vec<(String, String)>, RawBody);

/// Send with ureq and return the answer's status, headers and body reader, the whole exchange
/// bounded by the timeout.
fn exchange(req: &OutboundRequest) -> Result<Exchanged, OutboundError> {
    let limit = Duration::from_millis(req.timeout_ms);
    // Redirects are never followed, as the Worker's fetch is told (`redirect: "manual"`): a 3xx
    // comes back as it is and the core refuses it. (Streams are read off the socket, which
    // follows nothing.)
    let agent = ureq::AgentBuilder::new()
        .timeout(limit)
        .redirects(0)
        .build();
    let mut r = agent.request(req.method, &req.url);
    for (n, v) in &req.headers {
        r = r.set(n, v);
    }
    let result = match &req.body {
        Some(b) => r.send_bytes(b),
        None => r.call(),
    };
    let resp = match result {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(ureq::Error::Transport(t)) => {
            let text = t.to_string();
            return Err(if text.contains("timed out") || text.contains("Timeout") {
                OutboundError::Timeout
            } else {
                OutboundError::Unreachable(text)
            });
        }
    };
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_owned())))
        .collect();
    Ok((resp.status(), headers, resp.into_reader()))
}

fn read_error(e: std::io::Error) -> OutboundError {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => OutboundError::Timeout,
        _ => OutboundError::Unreachable(e.to_string()),
    }
}

/// A streamed HTTP/1.1 answer read straight off its socket: ureq cannot change a connection's
/// read timeout once the headers are in, and a stream needs the provider timeout for the headers
/// and the idle timeout for each chunk after them. Plain http only (tests talk to 127.0.0.1).
pub struct RawBody {
    reader: std::io::BufReader<std::net::TcpStream>,
    chunked: bool,
    /// Bytes left of the current chunk (chunked) or of the body (Content-Length).
    left: Option<u64>,
    done: bool,
}

impl RawBody {
    fn line(&mut self) -> std::io::Result<String> {
        use std::io::BufRead;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// The next piece of the body (at most `max` bytes), `None` at its end.
    pub fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        if self.chunked && self.left == Some(0) {
            let size = self.line()?;
            let size = u64::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                self.done = true;
                return Ok(None);
            }
            self.left = Some(size);
        }
        let want = self.left.map_or(max as u64, |l| l.min(max as u64)) as usize;
        if want == 0 {
            self.done = true;
            return Ok(None);
        }
        let mut buf = vec![0u8; want];
        let n = self.reader.read(&mut buf)?;
        if n == 0 {
            self.done = true;
            return if self.left.is_some() && !self.chunked {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            } else {
                Ok(None)
            };
        }
        buf.truncate(n);
        if let Some(l) = &mut self.left {
            *l -= n as u64;
            if *l == 0 && self.chunked {
                self.line()?; // the CRLF after the chunk's data
            } else if *l == 0 {
                self.done = true;
            }
        }
        Ok(Some(buf))
    }
}

/// Send `req` over a fresh connection and read the answer's head within the provider timeout;
/// the body is then read with the idle timeout.
fn stream_exchange(req: &OutboundRequest) -> Result<StreamExchanged, OutboundError> {
    use std::io::Write;
    use std::net::{TcpStream, ToSocketAddrs};
    let url = url::Url::parse(&req.url).map_err(|e| OutboundError::Unreachable(e.to_string()))?;
    let (host, port) = (url.host_str().unwrap_or(""), url.port().unwrap_or(80));
    let limit = Duration::from_millis(req.timeout_ms);
    let unreachable = |e: std::io::Error| OutboundError::Unreachable(e.to_string());
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| OutboundError::Unreachable(format!("no address for {host}")))?;
    let mut socket = TcpStream::connect_timeout(&addr, limit).map_err(unreachable)?;
    socket.set_read_timeout(Some(limit)).map_err(unreachable)?;
    socket.set_write_timeout(Some(limit)).map_err(unreachable)?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let body = req.body.clone().unwrap_or_default();
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.method,
        body.len()
    );
    for (n, v) in &req.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).map_err(read_error)?;
    socket.write_all(&body).map_err(read_error)?;
    let mut raw = RawBody {
        reader: std::io::BufReader::new(socket),
        chunked: false,
        left: None,
        done: false,
    };
    let status_line = raw.line().map_err(read_error)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| OutboundError::Unreachable(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = raw.line().map_err(read_error)?;
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    raw.chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    raw.left = if raw.chunked {
        Some(0)
    } else {
        header("content-length").and_then(|v| v.parse().ok())
    };
    let idle = req.idle_timeout_ms.map_or(limit, Duration::from_millis);
    raw.reader
        .get_ref()
        .set_read_timeout(Some(idle))
        .map_err(unreachable)?;
    Ok((status, headers, raw))
}

impl Outbound for HttpOutbound {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let (status, headers, reader) = exchange(&req)?;
        let mut body = Vec::new();
        reader
            .take(req.max_response_bytes as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock
                {
                    OutboundError::Timeout
                } else {
                    OutboundError::Unreachable(e.to_string())
                }
            })?;
        if body.len() > req.max_response_bytes {
            return Err(OutboundError::TooLarge);
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    }

    async fn send_streaming(
        &self,
        req: OutboundRequest,
    ) -> Result<StreamingResponse, OutboundError> {
        let (status, headers, mut body) = stream_exchange(&req)?;
        let max = req.max_response_bytes;
        // Each poll does one blocking read, bounded by the idle timeout (the socket's read
        // timeout): fine on the tests' single-threaded executor, and the chunks still arrive one
        // by one as the stand-in sends them. Dropping the body closes the connection.
        let stream = futures::stream::unfold(Some(()), move |state| {
            let item = state.and_then(|()| match body.next_chunk(16 * 1024) {
                Ok(None) => None,
                Ok(Some(c)) if c.len() > max => Some(Err(OutboundError::TooLarge)),
                Ok(Some(c)) => Some(Ok(c)),
                Err(e) => Some(Err(read_error(e))),
            });
            let next = match &item {
                Some(Ok(_)) => Some(()),
                _ => None,
            };
            async move { item.map(|i| (i, next)) }
        });
        Ok(StreamingResponse {
            status,
            headers,
            body: Box::pin(stream),
        })
    }

    async fn sign_rs256(&self, pkcs8_der: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{SignatureEncoding, Signer};
        let key = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der).map_err(|e| e.to_string())?;
        let signer = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(key);
        Ok(signer.sign(data).to_vec())
    }
}

/// A failure counter with a fixed window, standing in for the rate-limiting binding natively.
/// The budget is large by default so bad-input tables do not trip it; brute-force tests lower it.
pub struct MemLimiter {
    pub budget: Cell<u32>,
    pub window_ms: i64,
    counts: RefCell<HashMap<String, (i64, u32)>>,
    blocked: RefCell<HashMap<String, i64>>,
}

impl Default for MemLimiter {
    fn default() -> Self {
        MemLimiter {
            budget: Cell::new(1_000_000),
            window_ms: 60_000,
            counts: RefCell::default(),
            blocked: RefCell::default(),
        }
    }
}

impl Limiter for MemLimiter {
    fn blocked_for(&self, client: &str, now_ms: i64) -> Option<u64> {
        let until = *self.blocked.borrow().get(client)?;
        (until > now_ms).then(|| ((until - now_ms) as u64).div_ceil(1000))
    }
    async fn failure(&self, client: &str, now_ms: i64) -> Option<u64> {
        let mut counts = self.counts.borrow_mut();
        let entry = counts.entry(client.to_owned()).or_insert((now_ms, 0));
        if now_ms - entry.0 >= self.window_ms {
            *entry = (now_ms, 0);
        }
        entry.1 += 1;
        if entry.1 > self.budget.get() {
            self.blocked
                .borrow_mut()
                .insert(client.to_owned(), now_ms + self.window_ms);
            return Some((self.window_ms as u64).div_ceil(1000));
        }
        None
    }
}

pub struct TestPlatform {
    pub db: SqliteDb,
    pub cache: MemCache,
    pub clock: Cell<i64>,
    pub outbound: HttpOutbound,
    pub limiter: MemLimiter,
    /// The ledgers of limits over time, in memory, on the test clock.
    pub counters: LocalCounters,
    /// `Some`: randomness from a SplitMix64 generator with this state, so runs replay exactly.
    pub seed: Cell<Option<u64>>,
}

impl TestPlatform {
    /// A fresh platform over a fresh database, with OS randomness.
    pub fn new() -> Self {
        TestPlatform {
            db: SqliteDb::new(),
            cache: MemCache::default(),
            clock: Cell::new(START_MS),
            outbound: HttpOutbound,
            limiter: MemLimiter::default(),
            counters: LocalCounters::default(),
            seed: Cell::new(None),
        }
    }
}

/// The deployment configuration every test service starts with. Loopback is allowed in provider
/// URLs (explicitly: the default allows none), since the provider stand-in listens on 127.0.0.1.
pub fn test_config() -> Config {
    Config {
        admin_token: Some(ADMIN_TOKEN.into()),
        keyring: Some(Keyring::new(MasterKey::new(1, TEST_MASTER_KEY), vec![])),
        builtin_models: BUILTIN_ENABLED.into(),
        provider_timeout_ms: 2_000,
        address_policy: AddressPolicy {
            loopback: true,
            ..AddressPolicy::default()
        },
        ..Config::default()
    }
}

impl Platform for TestPlatform {
    type Db = SqliteDb;
    type Cache = MemCache;
    type Outbound = HttpOutbound;
    type Limiter = MemLimiter;
    type Counters = LocalCounters;
    fn limiter(&self) -> &MemLimiter {
        &self.limiter
    }
    fn counters(&self) -> &LocalCounters {
        self.counters.now_ms.set(self.clock.get());
        &self.counters
    }
    fn db(&self) -> &SqliteDb {
        &self.db
    }
    fn outbound(&self) -> &HttpOutbound {
        &self.outbound
    }
    fn cache(&self) -> &MemCache {
        self.cache.now.set(self.clock.get());
        &self.cache
    }
    fn now_ms(&self) -> i64 {
        self.clock.get()
    }
    fn fill_random(&self, buf: &mut [u8]) {
        let Some(mut state) = self.seed.get() else {
            getrandom::getrandom(buf).expect("os randomness");
            return;
        };
        // SplitMix64: deterministic, and plenty for ids and secrets nobody attacks.
        for chunk in buf.chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        self.seed.set(Some(state));
    }
}

/// Every log line of this test binary, for the leak checks.
pub fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Captures keyward's own log lines (what the Worker would print), not the test HTTP client's.
struct Capture;
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("keyward")
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        log_lines()
            .lock()
            .unwrap()
            .push(format!("[{}] {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}
static CAPTURE: Capture = Capture;

/// One service instance under test, plus every response body it produced.
pub struct T {
    pub app: App<TestPlatform>,
    pub bodies: RefCell<Vec<String>>,
    /// For the last streamed response: when each chunk arrived (since the response) and its size.
    pub last_chunks: RefCell<Vec<(Duration, usize)>>,
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

impl T {
    pub fn new() -> Self {
        if log::set_logger(&CAPTURE).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
        T {
            app: App::new(TestPlatform::new(), test_config()),
            bodies: RefCell::new(Vec::new()),
            last_chunks: RefCell::new(Vec::new()),
        }
    }

    pub fn db(&self) -> &SqliteDb {
        &self.app.platform.db
    }

    pub fn now(&self) -> i64 {
        self.app.platform.clock.get()
    }

    pub fn advance_minutes(&self, m: i64) {
        self.advance_ms(m * 60_000);
    }

    pub fn advance_ms(&self, ms: i64) {
        let c = &self.app.platform.clock;
        c.set(c.get() + ms);
    }

    /// Send a request as the glue would, then run its deferred writes (as `wait_until` does).
    pub fn send(&self, req: Request) -> Response {
        let mut resp = block_on(self.app.handle(req));
        // A streamed body is read to its end chunk by chunk, as a client would.
        if let Some(mut stream) = resp.stream.take() {
            use futures::StreamExt;
            let start = std::time::Instant::now();
            let mut chunks = Vec::new();
            while let Some(chunk) = block_on(stream.next()) {
                chunks.push((start.elapsed(), chunk.len()));
                resp.body.extend_from_slice(&chunk);
            }
            drop(stream);
            *self.last_chunks.borrow_mut() = chunks;
        }
        // Kept on the response so tests can see what was deferred.
        let mut stmts = resp.deferred.clone();
        if let Some(rx) = resp.deferred_after_stream.take() {
            stmts.extend(block_on(rx).unwrap_or_default());
        }
        if !stmts.is_empty() {
            block_on(self.app.platform.db.batch(stmts)).expect("deferred write");
        }
        if let Some(rx) = resp.limits_after.take() {
            let p = &self.app.platform;
            if let Ok(s) = block_on(rx) {
                block_on(s.run(p.counters(), &p.db));
            }
            // The objects' flush, at once (deployed: within USAGE_FLUSH_SECONDS).
            self.flush_ledgers();
        }
        self.bodies
            .borrow_mut()
            .push(String::from_utf8_lossy(&resp.body).into_owned());
        resp
    }

    /// Write what every in-memory ledger gathered, as each object's alarm does.
    pub fn flush_ledgers(&self) {
        let flushes: Vec<_> = self
            .app
            .platform
            .counters
            .ledgers
            .borrow_mut()
            .values_mut()
            .map(|l| l.take_flush())
            .collect();
        for f in flushes.into_iter().filter(|f| !f.is_empty()) {
            block_on(
                self.app
                    .platform
                    .db
                    .batch(keyward::store::usage::flush_stmts(&f)),
            )
            .expect("flush");
        }
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Json>) -> Response {
        let mut req =
            Request::new(method, path).header("authorization", &format!("Bearer {ADMIN_TOKEN}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req)
    }

    pub fn user(&self, token: &str, method: &str, path: &str, body: Option<Json>) -> Response {
        let mut req =
            Request::new(method, path).header("authorization", &format!("Bearer {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req)
    }

    /// A POST with an `Idempotency-Key`, as the admin (`token` None) or with a user token.
    pub fn keyed(&self, token: Option<&str>, path: &str, body: Json, key: &str) -> Response {
        let bearer = token.unwrap_or(ADMIN_TOKEN);
        self.send(
            Request::new("POST", path)
                .header("authorization", &format!("Bearer {bearer}"))
                .header("idempotency-key", key)
                .json(&body),
        )
    }

    /// Create a user (and tenant) and return the user's JSON.
    pub fn create_user(&self, username: &str, tenant_id: Option<&str>, role: Option<&str>) -> Json {
        let mut body = json!({"username": username});
        if let Some(t) = tenant_id {
            body["tenant_id"] = json!(t);
        }
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        let r = self.admin("POST", "/api/v1/admin/users", Some(body));
        assert_eq!(
            r.status,
            200,
            "create user: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json_body()["data"].clone()
    }

    /// Issue a key through the admin API; returns the creation data (with `token`).
    pub fn issue_key(&self, username: &str, body: Json) -> Json {
        let r = self.admin(
            "POST",
            &format!("/api/v1/admin/users/{username}/api_key"),
            Some(body),
        );
        assert_eq!(
            r.status,
            200,
            "issue key: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json_body()["data"].clone()
    }

    /// A user with a fresh key: (user json, key json).
    pub fn user_with_key(&self, username: &str) -> (Json, Json) {
        let u = self.create_user(username, None, None);
        let k = self.issue_key(username, json!({}));
        (u, k)
    }

    pub fn me_status(&self, token: &str) -> u16 {
        self.user(token, "GET", "/api/v1/me", None).status
    }
}

/// The token string of a creation response.
/// Connect the provider stand-in's chat model to `tok`'s tenant as `standin-chat`
/// (OpenAI-API-Compatible at `{standin_base}/v1`, with `key`), as the relay tests' tenants have it.
pub fn connect_standin_chat(t: &T, tok: &str, standin_base: &str, key: &str) {
    let r = t.user(
        tok,
        "POST",
        "/api/v1/models",
        Some(json!({
            "llm_factory": "OpenAI-API-Compatible", "llm_name": "standin-chat",
            "base_url": format!("{standin_base}/v1"), "api_key": key
        })),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// A gateway key `team-chat` on the stand-in's chat model (connected first) with the stand-in's
/// `key`, and that model as the tenant's default chat model: the three ways a relayed call names
/// its model.
pub fn team_chat_and_default(t: &T, tok: &str, key: &str) {
    let r = t.user(
        tok,
        "POST",
        "/api/v1/ai_keys",
        Some(json!({
            "alias": "team-chat", "provider": "OpenAI-API-Compatible", "model": "standin-chat",
            "api_key": key, "input_limit": 0, "status": "enabled"
        })),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = t.user(
        tok,
        "POST",
        "/api/v1/models/default",
        Some(json!({"llm_id": "standin-chat@OpenAI-API-Compatible"})),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// A response's body as text (lossy), for assertions and their messages.
pub fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

pub fn token(k: &Json) -> String {
    k["token"].as_str().expect("token").to_owned()
}
