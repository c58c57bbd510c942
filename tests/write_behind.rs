//! The deferred writes of requests answered at about the same time, gathered into one batch
//! (`keyward::store::write_behind`), against real SQLite with keyward's schema: what several
//! requests leave behind lands in one batch, after one window they share; one request whose write
//! fails loses only its own; a queue longer than one batch carries is written in several, every
//! request's writes whole.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{block_on, SqliteDb, T};
use keyward::store::keys::touch;
use keyward::store::write_behind::{WriteBehind, MAX_STATEMENTS};
use keyward::store::Stmt;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The window: pending for its first `n` polls. The requests queued while it is open share it
/// and each polls it once, so with `n` requests driven together every one queues before any wakes.
struct Turns(usize);

impl Future for Turns {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

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
        queue.write(db, vec![touch(&ids[0], 1_000)], || Turns(3)),
        queue.write(db, vec![touch(&ids[1], 2_000)], || Turns(3)),
        queue.write(db, vec![touch(&ids[2], 3_000)], || Turns(3)),
    ));
    assert!(a && b && c);
    assert_eq!(
        db.calls.get() - calls,
        1,
        "one database call for three requests"
    );
    assert_eq!(queue.batches(), 1);
    for (id, at) in ids.iter().zip([1_000, 2_000, 3_000]) {
        assert_eq!(last_used(db, id), at);
    }
    // Nothing to write is no call at all.
    assert!(block_on(queue.write(db, Vec::new(), || Turns(0))));
    assert_eq!(db.calls.get() - calls, 1);
}

#[test]
fn requests_queued_while_a_window_is_open_share_it_and_one_dropped_strands_none() {
    use futures::FutureExt;
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    let opened = Cell::new(0);
    let open = || {
        opened.set(opened.get() + 1);
        Turns(3)
    };
    let (b, c) = block_on(async {
        // The request that opens the window queues, then is dropped while the window is open.
        let mut first = Box::pin(queue.write(db, vec![touch(&ids[0], 1_000)], open));
        assert!(first.as_mut().now_or_never().is_none());
        drop(first);
        futures::future::join(
            queue.write(db, vec![touch(&ids[1], 2_000)], open),
            queue.write(db, vec![touch(&ids[2], 3_000)], open),
        )
        .await
    });
    assert!(b && c);
    assert_eq!(opened.get(), 1, "one window for the three requests");
    assert_eq!(queue.batches(), 1);
    // The dropped request's writes landed with the others'.
    for (id, at) in ids.iter().zip([1_000, 2_000, 3_000]) {
        assert_eq!(last_used(db, id), at);
    }
    // The window has ended: the next request opens another.
    assert!(block_on(queue.write(db, vec![touch(&ids[0], 4_000)], open)));
    assert_eq!((opened.get(), queue.batches()), (2, 2));
    assert_eq!(last_used(db, &ids[0]), 4_000);
}

#[test]
fn a_request_whose_write_fails_loses_only_its_own() {
    let t = T::new();
    let ids = three_keys(&t);
    let db = t.db();
    let queue = WriteBehind::default();
    let (a, bad, c) = block_on(futures::future::join3(
        queue.write(db, vec![touch(&ids[0], 1_000)], || Turns(3)),
        queue.write(db, vec![touch(&ids[1], 2_000), doomed()], || Turns(3)),
        queue.write(db, vec![touch(&ids[2], 3_000)], || Turns(3)),
    ));
    assert_eq!((a, bad, c), (true, false, true));
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
    let all = block_on(futures::future::join3(
        queue.write(db, many(&ids[0], 10_000), || Turns(3)),
        queue.write(db, many(&ids[1], 20_000), || Turns(3)),
        queue.write(db, many(&ids[2], 30_000), || Turns(3)),
    ));
    assert_eq!(all, (true, true, true));
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
    let all = block_on(futures::future::join4(
        queue.write(db, call("m@F", 10, 1_000), || Turns(4)),
        queue.write(db, call("m@F", 20, 3_000), || Turns(4)),
        queue.write(db, call("m@F", 30, 2_000), || Turns(4)),
        queue.write(db, call("other@F", 5, 1_500), || Turns(4)),
    ));
    assert_eq!(all, (true, true, true, true));
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
