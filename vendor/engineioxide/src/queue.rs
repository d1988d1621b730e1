//! A bounded single-consumer queue that allocates on demand.
//!
//! It replaces the `tokio::sync::mpsc` channel that buffered a socket's outgoing packets.
//! tokio's bounded channel allocates its storage in blocks of 32 slots, and the first
//! block is allocated with the channel: with a [`PacketBuf`](engineioxide_core::PacketBuf)
//! of 168 bytes that is about 5.4 KiB per socket, although an idle socket only ever holds
//! one ping at a time. This queue keeps its packets in a [`VecDeque`] that is allocated
//! when the first packet is pushed. It keeps the channel's semantics that the crate relies
//! on: bounded by `max_buffer_size` (permits included), `Full` and `Closed` errors, a
//! receiver that drains what was queued before `close`, and `closed()` for the senders.
//!
//! The buffer is kept while the socket is busy and released at its idle points: the
//! heartbeat calls [`Queue::release_when_empty`] after it queued a ping, so the buffer goes
//! as soon as the ping is taken and nothing else is queued. Releasing it whenever the
//! consumer emptied it instead cost an allocation and a free per delivery to a socket that
//! takes its messages one at a time, which is the common case under fan-out.
//!
//! Places are counted in an atomic, so that [`Queue::try_reserve`] (once per delivery, by
//! socketioxide) takes no lock: a delivery locks the queue once to push, and the consumer
//! once to pop.
//!
//! It also holds the socket's volatile slot ([`Queue::set_volatile`]), which replaced a
//! `tokio::sync::watch` channel: the channel's shared state (a value slot and eight
//! `Notify`s) cost 512 bytes per socket for a feature that most sockets never use. The slot
//! keeps the latest volatile item only, outside the bound, and the consumer takes it after
//! the queued items, as the transports did with the watch channel.
use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use tokio::sync::{Notify, mpsc::error::TrySendError};

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// The latest volatile item, not yet taken (boxed: it is rarely used, and a socket that
    /// does not use it should not pay for its size).
    volatile: Option<Box<T>>,
    /// Release the buffer when it is next emptied ([`Queue::release_when_empty`]).
    release: bool,
    /// Set under the lock by [`Queue::close`], so that no push that follows it is kept.
    closed: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Places taken: queued items and [`Permit`]s not used yet (the volatile item aside).
    used: AtomicUsize,
    /// The consumer's waker (one consumer at a time: it is behind the socket's `internal_rx` lock).
    rx_waker: AtomicWaker,
    /// Wakes producers waiting for room ([`Queue::send`]), counted in `space_waiters` so
    /// that a pop, which has none to wake almost always, does not take `Notify`'s lock.
    space: Notify,
    space_waiters: AtomicUsize,
    /// Wakes the waiters of [`Queue::closed`].
    closed_notify: Notify,
    closed: AtomicBool,
}

/// A place reserved in the queue, see [`Queue::try_reserve`].
#[derive(Debug)]
pub(crate) struct Permit<'a, T> {
    queue: &'a Queue<T>,
}

impl<T> Permit<'_, T> {
    /// Pushes `item` into the reserved place. If the queue was closed meanwhile, the item is dropped
    /// (as with tokio's `mpsc::Permit`).
    pub fn send(self, item: T) {
        let queue = self.queue;
        std::mem::forget(self);
        // A closed queue drops the item, as tokio's `mpsc::Permit` does.
        let _ = queue.push(item);
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.queue.give_back_place();
    }
}

impl<T> Queue<T> {
    /// A queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                volatile: None,
                release: false,
                closed: false,
            }),
            capacity: capacity.max(1),
            used: AtomicUsize::new(0),
            rx_waker: AtomicWaker::new(),
            space: Notify::new(),
            space_waiters: AtomicUsize::new(0),
            closed_notify: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place, without the lock.
    fn take_place(&self) -> Result<(), TrySendError<()>> {
        if self.is_closed() {
            return Err(TrySendError::Closed(()));
        }
        // Sequentially consistent with `give_back_place`: see `send`.
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < self.capacity).then_some(used + 1)
            })
            .map(|_| ())
            .map_err(|_| TrySendError::Full(()))
    }

    /// Gives a place back, and wakes the producers waiting for one.
    fn give_back_place(&self) {
        self.used.fetch_sub(1, Ordering::SeqCst);
        if self.space_waiters.load(Ordering::SeqCst) > 0 {
            self.space.notify_waiters();
        }
    }

    /// Pushes an item into a place taken before, or gives it back (and the place) if the
    /// queue was closed meanwhile.
    fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            drop(state);
            self.give_back_place();
            return Err(item);
        }
        // A first push allocates one slot only: most sockets hold one packet at a time (the
        // connect packet, a ping), and `VecDeque` would allocate four. A second packet
        // queued meanwhile grows the buffer to four as before.
        if state.items.capacity() == 0 {
            state.items.reserve_exact(1);
        }
        state.items.push_back(item);
        drop(state);
        self.rx_waker.wake();
        Ok(())
    }

    /// Pushes an item, or gives it back if the queue is full or closed.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match self.take_place() {
            Ok(()) => self.push(item).map_err(TrySendError::Closed),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(item)),
            Err(TrySendError::Full(())) => Err(TrySendError::Full(item)),
        }
    }

    /// Pushes an item, waiting for room if the queue is full; gives it back if the queue is closed.
    pub async fn send(&self, mut item: T) -> Result<(), T> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Counted before trying: a pop that does not see the count (and so does not
            // notify) gave its place back before this try, which then sees the room.
            self.space_waiters.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.space_waiters);
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(i)) => return Err(i),
                Err(TrySendError::Full(i)) => item = i,
            }
            notified.await;
        }
    }

    /// Reserves a place for one item.
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        self.take_place()?;
        Ok(Permit { queue: self })
    }

    /// Replaces the volatile item (see the module documentation); `false` if the queue is closed.
    pub fn set_volatile(&self, item: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.volatile = Some(Box::new(item));
        drop(state);
        self.rx_waker.wake();
        true
    }

    /// Releases the buffer now if the queue is empty, and else when the consumer has emptied
    /// it: the socket's idle points call it (see the module documentation).
    pub fn release_when_empty(&self) {
        let mut state = self.lock();
        if state.items.is_empty() {
            state.items = VecDeque::new();
        } else {
            state.release = true;
        }
    }

    /// Pops the next item if there is one, and else takes the volatile item.
    pub fn try_recv(&self) -> Option<T> {
        let mut state = self.lock();
        let Some(item) = state.items.pop_front() else {
            return state.volatile.take().map(|b| *b);
        };
        if state.release && state.items.is_empty() {
            state.items = VecDeque::new();
            state.release = false;
        }
        drop(state);
        self.give_back_place();
        Some(item)
    }

    /// Polls for the next item: `None` once the queue is closed and empty.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.try_recv() {
            return Poll::Ready(Some(item));
        }
        self.rx_waker.register(cx.waker());
        // Check again: an item pushed before the waker was registered did not wake us.
        if let Some(item) = self.try_recv() {
            return Poll::Ready(Some(item));
        }
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Waits for the next item: `None` once the queue is closed and empty.
    #[cfg(any(test, feature = "__test_harness"))]
    pub async fn recv(&self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Closes the queue: pushes fail from now on, the items already queued can still be received.
    pub fn close(&self) {
        self.lock().closed = true;
        self.closed.store(true, Ordering::Release);
        self.rx_waker.wake();
        self.space.notify_waiters();
        self.closed_notify.notify_waiters();
    }

    /// Whether the queue holds no item (volatile item included).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.items.is_empty() && state.volatile.is_none()
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until the queue is closed.
    pub async fn closed(&self) {
        let notified = self.closed_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::Arc, time::Duration};

    #[test]
    fn bounded_with_permits() {
        let q = Queue::new(2);
        q.try_send(1).unwrap();
        let p = q.try_reserve().unwrap();
        assert!(matches!(q.try_send(3), Err(TrySendError::Full(3))));
        assert!(matches!(q.try_reserve(), Err(TrySendError::Full(()))));
        p.send(2);
        assert_eq!(q.try_recv(), Some(1));
        assert_eq!(q.try_recv(), Some(2));
        assert_eq!(q.try_recv(), None);
        // A dropped permit gives its place back.
        drop(q.try_reserve().unwrap());
        q.try_send(4).unwrap();
        q.try_send(5).unwrap();
        assert!(q.try_send(6).is_err());
    }

    #[test]
    fn a_first_push_allocates_one_slot_and_a_second_grows_it() {
        let q = Queue::new(1024);
        q.try_send(0).unwrap();
        assert_eq!(q.lock().items.capacity(), 1);
        q.try_send(1).unwrap();
        assert!(q.lock().items.capacity() >= 2);
        assert_eq!(q.try_recv(), Some(0));
        assert_eq!(q.try_recv(), Some(1));
        // Released and pushed again: one slot again.
        q.release_when_empty();
        q.try_send(2).unwrap();
        assert_eq!(q.lock().items.capacity(), 1);
    }

    #[test]
    fn keeps_its_buffer_while_busy_and_releases_it_at_idle_points() {
        let q = Queue::new(1024);
        assert_eq!(q.lock().items.capacity(), 0);
        // Emptied by the consumer, the buffer is kept for the next deliveries.
        q.try_send(0).unwrap();
        assert_eq!(q.try_recv(), Some(0));
        assert!(q.lock().items.capacity() > 0);
        // Released at once when empty,
        q.release_when_empty();
        assert_eq!(q.lock().items.capacity(), 0);
        // and else when the consumer has emptied it (only then, and once).
        for i in 0..100 {
            q.try_send(i).unwrap();
        }
        q.release_when_empty();
        for i in 0..99 {
            assert_eq!(q.try_recv(), Some(i));
            assert!(q.lock().items.capacity() > 0);
        }
        assert_eq!(q.try_recv(), Some(99));
        assert_eq!(q.lock().items.capacity(), 0);
        q.try_send(1).unwrap();
        assert_eq!(q.try_recv(), Some(1));
        assert!(q.lock().items.capacity() > 0);
    }

    #[test]
    fn places_are_given_back_by_pops_unused_permits_and_pushes_after_close() {
        let q = Queue::new(2);
        q.try_send(1).unwrap();
        let p = q.try_reserve().unwrap();
        assert_eq!(q.used.load(Ordering::Relaxed), 2);
        assert_eq!(q.try_recv(), Some(1));
        assert_eq!(q.used.load(Ordering::Relaxed), 1);
        q.close();
        // The permit's item is dropped, and its place given back.
        p.send(2);
        assert_eq!(q.used.load(Ordering::Relaxed), 0);
        assert_eq!(q.try_recv(), None);
    }

    #[test]
    fn concurrent_producers_never_exceed_the_bound_nor_lose_an_item() {
        let q = Arc::new(Queue::new(64));
        let mut sent = 0usize;
        let mut got = Vec::new();
        std::thread::scope(|s| {
            let producers: Vec<_> = (0..4)
                .map(|t| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut ok = 0usize;
                        for i in 0..10_000u32 {
                            match q.try_reserve() {
                                Ok(p) => {
                                    p.send(t * 100_000 + i);
                                    ok += 1;
                                }
                                Err(TrySendError::Full(())) => {}
                                Err(TrySendError::Closed(())) => unreachable!(),
                            }
                            assert!(q.used.load(Ordering::Relaxed) <= 64);
                        }
                        ok
                    })
                })
                .collect();
            while !producers.iter().all(|p| p.is_finished()) {
                while let Some(x) = q.try_recv() {
                    got.push(x);
                }
            }
            for p in producers {
                sent += p.join().unwrap();
            }
        });
        while let Some(x) = q.try_recv() {
            got.push(x);
        }
        assert_eq!(got.len(), sent);
        assert_eq!(q.used.load(Ordering::Relaxed), 0);
        // Each producer's items come in the order it sent them.
        for t in 0..4 {
            let mine: Vec<_> = got.iter().filter(|x| **x / 100_000 == t).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn the_volatile_item_is_the_latest_and_comes_after_the_queued_ones() {
        let q = Queue::new(1);
        q.try_send(1).unwrap();
        // Outside the bound, and only the latest is kept.
        assert!(q.set_volatile(10));
        assert!(q.set_volatile(11));
        assert_eq!(q.try_recv(), Some(1));
        assert_eq!(q.try_recv(), Some(11));
        assert_eq!(q.try_recv(), None);
        q.close();
        assert!(!q.set_volatile(12));
        assert_eq!(q.try_recv(), None);
    }

    #[tokio::test]
    async fn recv_wakes_on_a_volatile_item() {
        let q = Arc::new(Queue::new(8));
        let q2 = q.clone();
        let rx = tokio::spawn(async move { q2.recv().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(q.set_volatile(3));
        let got = tokio::time::timeout(Duration::from_secs(1), rx).await.unwrap().unwrap();
        assert_eq!(got, Some(3));
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let q = Arc::new(Queue::new(8));
        q.try_send(1).unwrap();
        q.close();
        assert!(q.is_closed());
        assert!(matches!(q.try_send(2), Err(TrySendError::Closed(2))));
        assert!(matches!(q.try_reserve(), Err(TrySendError::Closed(()))));
        assert_eq!(q.recv().await, Some(1));
        assert_eq!(q.recv().await, None);
        q.closed().await;
    }

    #[tokio::test]
    async fn recv_wakes_on_send_and_close() {
        let q = Arc::new(Queue::new(8));
        let q2 = q.clone();
        let rx = tokio::spawn(async move {
            let a = q2.recv().await;
            let b = q2.recv().await;
            (a, b)
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.try_send(7).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let q3 = q.clone();
        let closed = tokio::spawn(async move { q3.closed().await });
        q.close();
        assert_eq!(rx.await.unwrap(), (Some(7), None));
        tokio::time::timeout(Duration::from_secs(1), closed)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn send_waits_for_room() {
        let q = Arc::new(Queue::new(1));
        q.try_send(1).unwrap();
        let q2 = q.clone();
        let tx = tokio::spawn(async move { q2.send(2).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!tx.is_finished());
        assert_eq!(q.try_recv(), Some(1));
        tokio::time::timeout(Duration::from_secs(1), tx)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(q.try_recv(), Some(2));
        assert_eq!(q.space_waiters.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn send_is_woken_by_an_unused_permit_and_by_close() {
        let q = Arc::new(Queue::new(1));
        let permit = q.try_reserve().unwrap();
        let q2 = q.clone();
        let tx = tokio::spawn(async move { q2.send(2).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(permit);
        tokio::time::timeout(Duration::from_secs(1), tx)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let q3 = q.clone();
        let tx = tokio::spawn(async move { q3.send(3).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.close();
        let r = tokio::time::timeout(Duration::from_secs(1), tx).await.unwrap().unwrap();
        assert_eq!(r, Err(3));
    }
}
