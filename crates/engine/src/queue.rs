//! Bounded queues between the engine's threads, each dropping its oldest item when full.
//!
//! Real-time media is worth more new than old: a queue that fills up because its consumer is
//! behind drops what has waited longest, and whoever made the queue decides what a drop means
//! (`on_drop`: a dropped video frame asks for a keyframe, a dropped audio packet is concealed by
//! the player's playout). A queue never blocks its producer and never grows past its capacity.
//! The consumer waits asynchronously ([`Receiver::recv`], the driver) or on a thread
//! ([`Receiver::recv_timeout`], the codec threads). The queue closes when every sender is gone.
//!
//! The queues and their capacities are listed in docs/architecture.md ("Queues between
//! threads").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

type OnDrop<T> = Box<dyn Fn(&T) + Send + Sync>;

struct Shared<T> {
    items: Mutex<State<T>>,
    capacity: usize,
    /// A thread waiting in `recv_timeout`.
    ready: Condvar,
    /// A task waiting in `recv`.
    notify: Notify,
    senders: AtomicUsize,
    dropped: AtomicU64,
    on_drop: Option<OnDrop<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        self.ready.notify_one();
        self.notify.notify_one();
    }
}

/// The sending half; clone it for each producer.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half (one consumer).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why [`Receiver::recv_timeout`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    Timeout,
    /// Every sender is gone and the queue is empty.
    Closed,
}

/// A queue of at most `capacity` items. `on_drop` is called (on the producer's thread) with
/// each item dropped to make room.
pub fn bounded<T>(capacity: usize, on_drop: Option<OnDrop<T>>) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(64)),
            closed: false,
        }),
        capacity: capacity.max(1),
        ready: Condvar::new(),
        notify: Notify::new(),
        senders: AtomicUsize::new(1),
        dropped: AtomicU64::new(0),
        on_drop,
    });
    let tx = Sender {
        shared: shared.clone(),
    };
    (tx, Receiver { shared })
}

impl<T> Sender<T> {
    /// Queues `item`, dropping the oldest one when the queue is full. False when the receiver
    /// is gone (the item is dropped).
    pub fn push(&self, item: T) -> bool {
        let evicted = {
            let mut state = self.shared.lock();
            if state.closed {
                return false;
            }
            let evicted = if state.items.len() >= self.shared.capacity {
                state.items.pop_front()
            } else {
                None
            };
            state.items.push_back(item);
            evicted
        };
        self.shared.wake();
        if let Some(old) = evicted {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(on_drop) = &self.shared.on_drop {
                on_drop(&old);
            }
        }
        true
    }

    /// Items dropped to make room so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.lock().closed = true;
            self.shared.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, or `None` once the queue is empty and every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let notified = self.shared.notify.notified();
            {
                let mut state = self.shared.lock();
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.shared.lock().items.pop_front()
    }

    /// The next item, waiting on this thread for at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvError> {
        let mut state = self.shared.lock();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(item) = state.items.pop_front() {
                return Ok(item);
            }
            if state.closed {
                return Err(RecvError::Closed);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            state = match self.shared.ready.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl<T> Drop for Receiver<T> {
    /// Producers see a closed queue and stop queueing.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_full_queue_drops_its_oldest_and_says_so() {
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        let on_drop: OnDrop<u32> = Box::new(move |v| {
            s.store(*v, Ordering::Relaxed);
        });
        let (tx, mut rx) = bounded(3, Some(on_drop));
        for i in 1..=5 {
            assert!(tx.push(i));
        }
        assert_eq!(tx.dropped(), 2);
        assert_eq!(
            seen.load(Ordering::Relaxed),
            2,
            "the last one dropped was 2"
        );
        let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert_eq!(got, vec![3, 4, 5]);
    }

    #[test]
    fn the_queue_closes_when_every_sender_is_gone() {
        let (tx, mut rx) = bounded::<u8>(4, None);
        let tx2 = tx.clone();
        tx.push(1);
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Err(RecvError::Timeout));
        drop(tx2);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvError::Closed)
        );
    }

    #[test]
    fn a_thread_waiting_is_woken_by_a_push() {
        let (tx, mut rx) = bounded::<u8>(4, None);
        let waiter = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(30)));
        tx.push(7);
        assert_eq!(waiter.join().ok(), Some(Ok(7)));
    }

    #[test]
    fn a_task_waiting_is_woken_by_a_push_and_by_the_close() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut rx) = bounded::<u8>(4, None);
        let pusher = std::thread::spawn(move || {
            tx.push(9);
        });
        rt.block_on(async {
            assert_eq!(rx.recv().await, Some(9));
            assert_eq!(rx.recv().await, None, "closed once the pusher is done");
        });
        pusher.join().ok();
    }

    #[test]
    fn pushes_after_the_receiver_is_gone_are_refused() {
        let (tx, rx) = bounded::<u8>(4, None);
        drop(rx);
        assert!(!tx.push(1));
    }
}
