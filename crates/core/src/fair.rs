//! A fair CPU gate for in-process (wasm) invocations.
//!
//! Per-function concurrency bounds how many invocations a function holds,
//! not how much CPU it gets: a function flooded with cheap requests fills
//! the scheduler's run queues and every other function's calls wait behind
//! them. The gate admits at most `slots` wasm invocations to run at once
//! (about twice the cores) and hands a freed slot to the waiting functions
//! in turn (round robin), so a function with one waiting call goes ahead of
//! a function with hundreds.
//!
//! The gate never stalls the platform: a call that waits longer than
//! `max_wait` runs without a slot. Guests blocked in a host call (a sleep,
//! a slow body) therefore cannot starve the others; they only lose their
//! priority. Host calls that know they wait on I/O (the key-value
//! capability's) give the slot back meanwhile ([`CpuTurn::without`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

type Key = (String, String);

#[derive(Default)]
struct State {
    free: usize,
    next_ticket: u64,
    waiting: HashMap<Key, VecDeque<(u64, oneshot::Sender<Slot>)>>,
    /// Functions with waiters, in the order they are served.
    turns: VecDeque<Key>,
}

/// The gate; cheap to share behind an `Arc`.
pub struct FairGate {
    state: Mutex<State>,
    max_wait: Duration,
}

/// A held slot; dropping it passes the slot to the next waiting function.
pub struct Slot {
    gate: Option<Arc<FairGate>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release(gate.clone());
        }
    }
}

impl FairGate {
    pub fn new(slots: usize, max_wait: Duration) -> Arc<FairGate> {
        Arc::new(FairGate {
            state: Mutex::new(State {
                free: slots.max(1),
                ..Default::default()
            }),
            max_wait,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot, at most `max_wait`; `None` means "run without one".
    pub async fn enter(self: &Arc<Self>, namespace: &str, name: &str) -> Option<Slot> {
        let key = (namespace.to_owned(), name.to_owned());
        let (ticket, rx) = {
            let mut s = self.lock();
            if s.free > 0 {
                s.free -= 1;
                return Some(Slot {
                    gate: Some(self.clone()),
                });
            }
            let ticket = s.next_ticket;
            s.next_ticket += 1;
            let (tx, rx) = oneshot::channel();
            let queue = s.waiting.entry(key.clone()).or_default();
            queue.push_back((ticket, tx));
            if queue.len() == 1 {
                s.turns.push_back(key.clone());
            }
            (ticket, rx)
        };
        let mut rx = rx;
        match tokio::time::timeout(self.max_wait, &mut rx).await {
            Ok(Ok(slot)) => Some(slot),
            _ => {
                let mut s = self.lock();
                if let Some(q) = s.waiting.get_mut(&key) {
                    q.retain(|(t, _)| *t != ticket);
                }
                drop(s);
                // Granted just as the wait ended: keep it.
                rx.try_recv().ok()
            }
        }
    }

    fn release(&self, me: Arc<FairGate>) {
        let mut s = self.lock();
        while let Some(key) = s.turns.pop_front() {
            let Some(queue) = s.waiting.get_mut(&key) else {
                continue;
            };
            let next = queue.pop_front();
            let more = !queue.is_empty();
            if !more {
                s.waiting.remove(&key);
            } else {
                s.turns.push_back(key);
            }
            if let Some((_, tx)) = next {
                let slot = Slot {
                    gate: Some(me.clone()),
                };
                match tx.send(slot) {
                    Ok(()) => return,
                    // The waiter gave up; the returned slot must not release
                    // again recursively while we hold the lock.
                    Err(mut slot) => {
                        slot.gate = None;
                    }
                }
            }
        }
        s.free += 1;
    }

    /// Slots free right now (for tests and metrics).
    pub fn free(&self) -> usize {
        self.lock().free
    }
}

/// An invocation's turn at the CPU, which it gives back while a host call
/// waits on I/O (a key-value write's commit, say): the slot goes to the
/// next waiting function, and the invocation asks for one again, as any
/// invocation does, before its guest runs on. Without this, invocations
/// waiting on I/O would hold every slot while the CPU idles.
#[derive(Clone, Default)]
pub struct CpuTurn(Option<Arc<TurnInner>>);

struct TurnInner {
    gate: Arc<FairGate>,
    key: Key,
    slot: Mutex<Option<Slot>>,
}

impl std::fmt::Debug for CpuTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuTurn")
            .field("gated", &self.0.is_some())
            .finish()
    }
}

impl CpuTurn {
    /// The turn of an invocation of `namespace/name` that holds `slot`
    /// (None: it runs without one).
    pub fn new(gate: &Arc<FairGate>, namespace: &str, name: &str, slot: Option<Slot>) -> CpuTurn {
        CpuTurn(Some(Arc::new(TurnInner {
            gate: gate.clone(),
            key: (namespace.to_owned(), name.to_owned()),
            slot: Mutex::new(slot),
        })))
    }

    fn held(inner: &TurnInner) -> std::sync::MutexGuard<'_, Option<Slot>> {
        inner.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `io` without holding the turn's slot (see the type's docs).
    pub async fn without<T>(&self, io: impl Future<Output = T>) -> T {
        let Some(inner) = &self.0 else {
            return io.await;
        };
        let given_back = Self::held(inner).take();
        if given_back.is_none() {
            // Running without a slot, or after the invocation ended.
            return io.await;
        }
        drop(given_back);
        let out = io.await;
        let slot = inner.gate.enter(&inner.key.0, &inner.key.1).await;
        *Self::held(inner) = slot;
        out
    }

    /// Ends the turn: its slot goes to the next waiting function, whoever
    /// still holds a copy of the turn.
    pub fn finish(&self) {
        if let Some(inner) = &self.0 {
            drop(Self::held(inner).take());
        }
    }

    /// A guard that ends the turn when dropped.
    pub fn end_on_drop(&self) -> TurnEnd {
        TurnEnd(self.clone())
    }
}

/// Ends a [`CpuTurn`] when dropped.
pub struct TurnEnd(CpuTurn);

impl Drop for TurnEnd {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_next_function_in_turn() {
        let gate = FairGate::new(1, Duration::from_secs(10));
        let held = gate.enter("d", "flood").await.expect("slot");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, f) in ["flood", "flood", "flood", "victim"]
            .into_iter()
            .enumerate()
        {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let slot = gate.enter("d", f).await.expect("slot");
                order.lock().expect("lock").push(format!("{f}{i}"));
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        for t in tasks {
            t.await.expect("join");
        }
        let order = order.lock().expect("lock").clone();
        assert_eq!(order[0], "flood0");
        assert_eq!(
            order[1], "victim3",
            "the victim goes before the flood's backlog: {order:?}"
        );
        assert_eq!(gate.free(), 1, "every slot came back");
    }

    #[tokio::test]
    async fn a_turn_waiting_on_io_lets_another_function_run() {
        let gate = FairGate::new(1, Duration::from_secs(10));
        let slot = gate.enter("d", "io").await.expect("slot");
        let turn = CpuTurn::new(&gate, "d", "io", Some(slot));
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let io = {
            let turn = turn.clone();
            tokio::spawn(async move {
                turn.without(async {
                    let _ = done_rx.await;
                })
                .await
            })
        };
        // While the I/O waits, the only slot is free for another function.
        let other = tokio::time::timeout(Duration::from_secs(5), gate.enter("d", "cpu"))
            .await
            .expect("the slot was given back")
            .expect("slot");
        done_tx.send(()).expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!io.is_finished(), "the turn waits for the slot again");
        drop(other);
        io.await.expect("join");
        assert_eq!(gate.free(), 0, "the turn holds its slot again");
        turn.finish();
        assert_eq!(gate.free(), 1, "finishing gives it back");
        // A copy left behind after the end does no harm.
        turn.without(async {}).await;
        assert_eq!(gate.free(), 1);
    }

    #[tokio::test]
    async fn waiting_is_bounded() {
        let gate = FairGate::new(1, Duration::from_millis(20));
        let _held = gate.enter("d", "a").await.expect("slot");
        let bypass = gate.enter("d", "b").await;
        assert!(bypass.is_none(), "runs without a slot after max_wait");
        assert_eq!(gate.free(), 0);
    }
}
