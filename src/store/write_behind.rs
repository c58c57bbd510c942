//! The writes requests leave behind (usage counters, a key's last use), gathered from the
//! requests one isolate answers at about the same time into one database batch.
//!
//! Written one batch per request, every relayed call would be one write transaction on D1's
//! single writer, however small. Here each request's writes wait in the queue for a short window,
//! one window shared by every request that queues while it is open (one timer for all of them,
//! not one each); when it ends, the first request to wake takes what is queued (oldest first, up
//! to [`MAX_STATEMENTS`]) and writes it as one batch, and every request whose writes it carried
//! learns the outcome; updates of the same counter row in it fold into one statement
//! ([`super::Fold`]). A batch that fails is retried request by request, so one statement that
//! cannot be written costs only its own request's writes. Each request waits until its own
//! writes are written (by itself or by another request), so a runtime that keeps a request alive
//! until its deferred work ends (the Workers' `waitUntil`) never leaves a write to an isolate
//! that may be gone; any request waiting on the window drives its timer, so one that is dropped
//! strands no other.

use super::{Db, Stmt};
use futures_channel::oneshot;
use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;

/// How long a request's writes wait for others to join them: the freshness of usage counters
/// and `last_used_at` is this much later, and each request's deferred work this much longer.
pub const WINDOW_MS: u64 = 100;

/// The most statements one batch carries (beyond it the rest wait for the next request to wake);
/// one request's own writes always go whole, however many.
pub const MAX_STATEMENTS: usize = 100;

struct Pending {
    id: u64,
    stmts: Vec<Stmt>,
    done: oneshot::Sender<bool>,
}

/// One isolate's queue of deferred writes.
#[derive(Default)]
pub struct WriteBehind {
    queue: RefCell<VecDeque<Pending>>,
    /// The window open now, if one is: the requests that queue while it is open wait on it.
    window: RefCell<Option<Shared<LocalBoxFuture<'static, ()>>>>,
    next_id: Cell<u64>,
    batches: Cell<u64>,
    statements: Cell<u64>,
}

impl WriteBehind {
    /// Queue `stmts`, wait for the open window (or one `window()` opens when none is), then write
    /// what is queued; resolves once `stmts` are written (true) or could not be (false).
    pub async fn write<D: Db, W>(
        &self,
        db: &D,
        stmts: Vec<Stmt>,
        window: impl FnOnce() -> W,
    ) -> bool
    where
        W: Future<Output = ()> + 'static,
    {
        if stmts.is_empty() {
            return true;
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (done, written) = oneshot::channel();
        self.queue
            .borrow_mut()
            .push_back(Pending { id, stmts, done });
        self.open_window(window).await;
        // Ours is still queued until some request (this one, when no other got there first)
        // takes it; oldest first, so the loop ends.
        while self.queue.borrow().iter().any(|p| p.id == id) {
            let taken = self.take();
            self.flush(db, taken).await;
        }
        // A request that took ours and was then dropped mid-write leaves its outcome unknown.
        written.await.unwrap_or(false)
    }

    /// The window open now, or a new one when the last has ended (or none was opened yet).
    fn open_window<W>(&self, window: impl FnOnce() -> W) -> Shared<LocalBoxFuture<'static, ()>>
    where
        W: Future<Output = ()> + 'static,
    {
        let mut open = self.window.borrow_mut();
        match open.as_ref() {
            Some(w) if w.peek().is_none() => w.clone(),
            _ => open.insert(window().boxed_local().shared()).clone(),
        }
    }

    /// How many batches this queue has written (for tests and figures).
    pub fn batches(&self) -> u64 {
        self.batches.get()
    }

    /// How many statements its gathered batches carried, after folding (for tests and figures).
    pub fn statements(&self) -> u64 {
        self.statements.get()
    }

    fn take(&self) -> Vec<Pending> {
        let mut queue = self.queue.borrow_mut();
        let mut taken = Vec::new();
        let mut n = 0;
        while let Some(p) = queue.front() {
            if !taken.is_empty() && n + p.stmts.len() > MAX_STATEMENTS {
                break;
            }
            n += p.stmts.len();
            taken.extend(queue.pop_front());
        }
        taken
    }

    async fn flush<D: Db>(&self, db: &D, taken: Vec<Pending>) {
        self.batches.set(self.batches.get() + 1);
        // Counters' updates of the same row fold into one statement: a busy isolate's calls of
        // one key and model cost D1 one row per counter and window, not one per call.
        let all = super::fold_all(taken.iter().flat_map(|p| p.stmts.clone()));
        self.statements
            .set(self.statements.get() + all.len() as u64);
        match db.run_batch(all).await {
            Ok(_) => {
                for p in taken {
                    let _ = p.done.send(true);
                }
            }
            Err(e) if taken.len() == 1 => {
                log::warn!("deferred write failed: {e}");
                for p in taken {
                    let _ = p.done.send(false);
                }
            }
            Err(e) => {
                log::warn!(
                    "a batch of {} requests' deferred writes failed ({e}); writing each alone",
                    taken.len()
                );
                for p in taken {
                    self.batches.set(self.batches.get() + 1);
                    let ok = match db.run_batch(p.stmts).await {
                        Ok(_) => true,
                        Err(e) => {
                            log::warn!("deferred write failed: {e}");
                            false
                        }
                    };
                    let _ = p.done.send(ok);
                }
            }
        }
    }
}
