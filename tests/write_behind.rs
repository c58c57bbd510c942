//! The deferred writes of requests answered at about the same time, gathered into one batch
//! (`keyward::store::write_behind`), against real SQLite with keyward's schema: what several
//! requests leave behind lands in one batch, after the one window the first of them opened and
//! only it waits for (a request whose writes join an open window needs no deferred work of its
//! own); one request whose write fails loses only its own; a queue longer than one
//! batch carries is written in several, every request's writes whole.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{block_on, SqliteDb, T};
use keyward::store::keys::touch;
use keyward::store::write_behind::{WriteBehind, MAX_STATEMENTS};
use keyward::store::Stmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The window: pending once, so that every request driven together with the one that opened it
/// queues before it wakes.
struct Turn(bool);

impl Future for Turn {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What a request learns of its own writes: written, not written, or unknown (a closed receiver).
type Outcome = Result<bool, futures_channel::oneshot::Canceled>;

/// Three users with a key each; their key ids.
fn three_keys(t: &T) -> Vec<String> {
    ["wb-a", "wb-b", "wb-c"]
        .iter()
        .map(|u| {
            let (_, key) = t.user_with_key(u);
            key["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn last_used(db: &SqliteDb, id: &str) -> i64 {
    db.count(&format!(
        "SELECT COALESCE(last_used_at, 0) FROM api_keys WHERE id = '{id}'"
    ))
}

/// A write that cannot land: a key of a tenant and user that do not exist.
fn doomed() -> Stmt {
    keyward::stmt!(
        "INSERT INTO api_keys (id, access_key, secret_hash, secret_hint, username, tenant_id, description, create_date, update_date) \
         VALUES ('wb-doomed', 'kwa_doomed', 'x', 'kws_…', 'nobody', 'no-tenant', '', 1, 1)"
    )
}

#[test]
fn the_writes_of_requests_answered_together_land_in_one_batch() {
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    let calls = db.calls.get();
    let (a, b, c) = block_on(futures::future::join3(
        queue.write(db, vec![touch(&ids[0], 1_000)], || Turn(false)),
        queue.write(db, vec![touch(&ids[1], 2_000)], || Turn(false)),
        queue.write(db, vec![touch(&ids[2], 3_000)], || Turn(false)),
    ));
    let outcomes: Vec<Outcome> = [a, b, c].into_iter().map(block_on).collect();
    assert_eq!(outcomes, [Ok(true); 3]);
    assert_eq!(
        db.calls.get() - calls,
        1,
        "one database call for three requests"
    );
    assert_eq!((queue.windows(), queue.batches()), (1, 1));
    for (id, at) in ids.iter().zip([1_000, 2_000, 3_000]) {
        assert_eq!(last_used(db, id), at);
    }
    // Nothing to write is no call at all.
    let nothing = block_on(queue.write(db, Vec::new(), || Turn(false)));
    assert_eq!(block_on(nothing), Ok(true));
    assert_eq!((db.calls.get() - calls, queue.windows()), (1, 1));
}

#[test]
fn only_the_request_that_opens_a_window_waits_and_one_dropped_strands_none() {
    use futures::FutureExt;
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    // The request that opens the window queues, then is dropped while the window is open.
    let mut first = Box::pin(queue.write(db, vec![touch(&ids[0], 1_000)], || Turn(false)));
    assert!(first.as_mut().now_or_never().is_none());
    // A request queued meanwhile joins that window and waits for nothing.
    let joined = queue
        .write(db, vec![touch(&ids[1], 2_000)], || Turn(false))
        .now_or_never()
        .expect("a request joining an open window does not wait");
    drop(first);
    assert_eq!((queue.windows(), queue.batches()), (1, 0));
    // The next request opens the next window, which writes the older ones' writes first.
    let last = block_on(queue.write(db, vec![touch(&ids[2], 3_000)], || Turn(false)));
    assert_eq!((block_on(joined), block_on(last)), (Ok(true), Ok(true)));
    assert_eq!((queue.windows(), queue.batches()), (2, 1));
    for (id, at) in ids.iter().zip([1_000, 2_000, 3_000]) {
        assert_eq!(last_used(db, id), at);
    }
}

#[test]
fn writes_join_an_open_window_without_deferred_work_and_none_is_open_they_come_back() {
    use futures::FutureExt;
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    // No window open: the statements come back whole, for the caller to open one.
    let back = queue
        .join(vec![touch(&ids[0], 1_000)])
        .expect_err("nothing to join");
    assert_eq!(back.len(), 1);
    assert_eq!(queue.windows(), 0);
    let mut opener = Box::pin(queue.write(db, back, || Turn(false)));
    assert!(opener.as_mut().now_or_never().is_none());
    let joined = queue
        .join(vec![touch(&ids[1], 2_000)])
        .expect("a window is open");
    let nothing = queue
        .join(Vec::new())
        .expect("nothing to write joins anything");
    assert_eq!(block_on(nothing), Ok(true));
    let opened = block_on(opener);
    assert_eq!((block_on(opened), block_on(joined)), (Ok(true), Ok(true)));
    assert_eq!((queue.windows(), queue.batches()), (1, 1));
    for (id, at) in ids.iter().zip([1_000, 2_000]) {
        assert_eq!(last_used(db, id), at);
    }
    // The window has closed: the next writes come back again.
    assert!(queue.join(vec![touch(&ids[2], 3_000)]).is_err());
}

#[test]
fn a_request_whose_write_fails_loses_only_its_own() {
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    let (a, bad, c) = block_on(futures::future::join3(
        queue.write(db, vec![touch(&ids[0], 1_000)], || Turn(false)),
        queue.write(db, vec![touch(&ids[1], 2_000), doomed()], || Turn(false)),
        queue.write(db, vec![touch(&ids[2], 3_000)], || Turn(false)),
    ));
    let outcomes: Vec<Outcome> = [a, bad, c].into_iter().map(block_on).collect();
    assert_eq!(outcomes, [Ok(true), Ok(false), Ok(true)]);
    assert_eq!(last_used(db, &ids[0]), 1_000);
    assert_eq!(last_used(db, &ids[2]), 3_000);
    // The failed request's batch is all or nothing: its touch did not land either.
    assert_eq!(last_used(db, &ids[1]), 0);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM api_keys WHERE id = 'wb-doomed'"),
        0
    );
    // The gathered batch, then each of the three alone.
    assert_eq!(queue.batches(), 4);
    assert!(common::log_lines()
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("deferred write failed")));
}

#[test]
fn a_queue_longer_than_one_batch_is_written_in_several_each_request_whole() {
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    // Three requests of 60 statements each: no batch splits a request, none exceeds the maximum.
    let many = |id: &str, base: i64| (0..60).map(|i| touch(id, base + i)).collect::<Vec<_>>();
    let calls = db.calls.get();
    let (a, b, c) = block_on(futures::future::join3(
        queue.write(db, many(&ids[0], 10_000), || Turn(false)),
        queue.write(db, many(&ids[1], 20_000), || Turn(false)),
        queue.write(db, many(&ids[2], 30_000), || Turn(false)),
    ));
    let outcomes: Vec<Outcome> = [a, b, c].into_iter().map(block_on).collect();
    assert_eq!(outcomes, [Ok(true); 3]);
    assert_eq!(queue.windows(), 1, "one window, written in several batches");
    const { assert!(60 * 2 > MAX_STATEMENTS && 60 <= MAX_STATEMENTS) };
    assert_eq!(db.calls.get() - calls, 3, "one batch per request here");
    for (id, base) in ids.iter().zip([10_000, 20_000, 30_000]) {
        assert_eq!(last_used(db, id), base + 59);
    }
}

#[test]
fn updates_of_the_same_counters_fold_into_one_statement_that_adds_them_up() {
    use keyward::limits::{Source, Used};
    use keyward::store::usage::record_call;
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    let source = |model: &str| Source {
        tenant_id: "wb-tenant".into(),
        key_id: "wb-key".into(),
        model: model.into(),
        ..Source::default()
    };
    let call = |model: &str, input: u64, at: i64| {
        let mut w = record_call(&source(model), Used { input, output: 1 }, at);
        w.push(touch(&ids[0], at));
        w
    };
    // Three calls of one model in the same hour, one of another: the first three's history
    // and last-use statements fold; the other model's history row is a row of its own.
    let (a, b, c, d) = block_on(futures::future::join4(
        queue.write(db, call("m@F", 10, 1_000), || Turn(false)),
        queue.write(db, call("m@F", 20, 3_000), || Turn(false)),
        queue.write(db, call("m@F", 30, 2_000), || Turn(false)),
        queue.write(db, call("other@F", 5, 1_500), || Turn(false)),
    ));
    let outcomes: Vec<Outcome> = [a, b, c, d].into_iter().map(block_on).collect();
    assert_eq!(outcomes, [Ok(true); 4]);
    assert_eq!(queue.batches(), 1);
    assert_eq!(
        queue.statements(),
        3,
        "two histories and one last use, not eight"
    );
    let sum = |col: &str, model: &str| {
        db.count(&format!(
            "SELECT {col} FROM usage_buckets WHERE model = '{model}' AND granularity = 'hour'"
        ))
    };
    assert_eq!(sum("requests", "m@F"), 3);
    assert_eq!(sum("input_tokens", "m@F"), 60);
    assert_eq!(sum("output_tokens", "m@F"), 3);
    assert_eq!(sum("requests", "other@F"), 1);
    assert_eq!(
        db.count("SELECT requests FROM usage_buckets WHERE model = 'm@F' AND granularity = 'day'"),
        3
    );
    // The latest use, whatever order the calls came in.
    assert_eq!(last_used(db, &ids[0]), 3_000);
}
