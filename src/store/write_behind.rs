//! The writes requests leave behind (usage counters, a key's last use), gathered from the
//! requests one isolate answers at about the same time into one database batch.
//!
//! Written one batch per request, every relayed call would be one write transaction on D1's
//! single writer, however small. Here a request that finds no window open opens one: it waits
//! for it (one timer, its own), then writes everything queued meanwhile, oldest first, in
//! batches of up to [`MAX_STATEMENTS`]; updates of the same counter row in a batch fold into one
//! statement ([`super::Fold`]). The requests that queue while a window is open leave their
//! writes to it and wait for nothing: the Workers runtime cancels a request whose deferred work
//! (`waitUntil`) waits on what only another request's timer or I/O can finish, and the one
//! that opened the window keeps the isolate alive until the writes are done. A batch that fails
//! is retried request by request, so one statement that cannot be written costs only its own
//! request's writes. A window whose opener was dropped before it ended leaves its writes to the
//! next window, which writes every older one first.

use super::{Db, Stmt};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;

/// How long the first request's writes wait for others to join them: the freshness of usage
/// counters and `last_used_at` is at most this much later, and the opener's deferred work this
/// much longer.
pub const WINDOW_MS: u64 = 100;

/// The most statements one batch carries (beyond it the rest go in the next batch); one
/// request's own writes always go whole, however many.
pub const MAX_STATEMENTS: usize = 100;

struct Pending {
    /// The window it was queued in.
    window: u64,
    stmts: Vec<Stmt>,
    done: oneshot::Sender<bool>,
}

/// One isolate's queue of deferred writes.
#[derive(Default)]
pub struct WriteBehind {
    queue: RefCell<VecDeque<Pending>>,
    /// Whether a window is open now; if one is, it is the last opened, number `windows`.
    open: Cell<bool>,
    windows: Cell<u64>,
    batches: Cell<u64>,
    statements: Cell<u64>,
}

/// Closes the open window when the request that opened it lets go of it, however that happens.
struct Opened<'a>(&'a Cell<bool>);

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl WriteBehind {
    /// Queue `stmts` in the open window, or open one with `window()` and, once it has ended,
    /// write what it gathered. Resolves at once for a request that joined an open window, after
    /// the writes for the one that opened it; the receiver tells whether `stmts` were written
    /// (a closed receiver: the request that took them was dropped mid-write).
    pub async fn write<D: Db, W: Future>(
        &self,
        db: &D,
        stmts: Vec<Stmt>,
        window: impl FnOnce() -> W,
    ) -> oneshot::Receiver<bool> {
        let stmts = match self.join(stmts) {
            Ok(written) => return written,
            Err(stmts) => stmts,
        };
        let (done, written) = oneshot::channel();
        let number = self.windows.get() + 1;
        self.queue.borrow_mut().push_back(Pending {
            window: number,
            stmts,
            done,
        });
        self.windows.set(number);
        self.open.set(true);
        let opened = Opened(&self.open);
        window().await;
        // Requests from now on open the next window.
        drop(opened);
        loop {
            let taken = self.take(number);
            if taken.is_empty() {
                break;
            }
            self.flush(db, taken).await;
        }
        written
    }

    /// Queue `stmts` in the open window without waiting for anything: the receiver, as
    /// [`WriteBehind::write`] gives it, or the statements back when no window is open (then
    /// `write` opens one). A caller that knows its writes already needs no deferred work of its
    /// own when this takes them.
    pub fn join(&self, stmts: Vec<Stmt>) -> Result<oneshot::Receiver<bool>, Vec<Stmt>> {
        if !stmts.is_empty() && !self.open.get() {
            return Err(stmts);
        }
        let (done, written) = oneshot::channel();
        if stmts.is_empty() {
            let _ = done.send(true);
            return Ok(written);
        }
        self.queue.borrow_mut().push_back(Pending {
            window: self.windows.get(),
            stmts,
            done,
        });
        Ok(written)
    }

    /// How many windows were opened (for tests and figures).
    pub fn windows(&self) -> u64 {
        self.windows.get()
    }

    /// How many batches this queue has written (for tests and figures).
    pub fn batches(&self) -> u64 {
        self.batches.get()
    }

    /// How many statements its gathered batches carried, after folding (for tests and figures).
    pub fn statements(&self) -> u64 {
        self.statements.get()
    }

    /// The oldest writes queued in windows up to `window`, up to [`MAX_STATEMENTS`] (one
    /// request's whole, however many, when that is all it can take); none when no such is queued.
    fn take(&self, window: u64) -> Vec<Pending> {
        let mut queue = self.queue.borrow_mut();
        let mut taken = Vec::new();
        let mut n = 0;
        while let Some(p) = queue.front() {
            if p.window > window || (!taken.is_empty() && n + p.stmts.len() > MAX_STATEMENTS) {
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
