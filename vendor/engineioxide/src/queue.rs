//! A bounded single-consumer queue that allocates on demand.
//!
//! It replaces the `tokio::sync::mpsc` channel that buffered a socket's outgoing packets.
//! tokio's bounded channel allocates its storage in blocks of 32 slots, and the first
//! block is allocated with the channel: with a [`PacketBuf`](engineioxide_core::PacketBuf)
//! of 168 bytes that is about 5.4 KiB per socket, although an idle socket only ever holds
//! one ping at a time. This queue keeps its packets in a [`VecDeque`] that is allocated
//! when the first packet is pushed and released when the consumer empties it, so an idle
//! socket holds no buffer at all. It keeps the channel's semantics that the crate relies
//! on: bounded by `max_buffer_size` (permits included), `Full` and `Closed` errors, a
//! receiver that drains what was queued before `close`, and `closed()` for the senders.
use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use tokio::sync::{Notify, mpsc::error::TrySendError};

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// Places held by [`Permit`]s that were not used yet.
    reserved: usize,
    closed: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// The consumer's waker (one consumer at a time: it is behind the socket's `internal_rx` lock).
    rx_waker: AtomicWaker,
    /// Wakes producers waiting for room ([`Queue::send`]).
    space: Notify,
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
        let mut state = queue.lock();
        state.reserved -= 1;
        if !state.closed {
            state.items.push_back(item);
        }
        drop(state);
        queue.rx_waker.wake();
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.queue.lock().reserved -= 1;
        self.queue.space.notify_waiters();
    }
}

impl<T> Queue<T> {
    /// A queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                reserved: 0,
                closed: false,
            }),
            capacity: capacity.max(1),
            rx_waker: AtomicWaker::new(),
            space: Notify::new(),
            closed_notify: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes an item, or gives it back if the queue is full or closed.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() + state.reserved >= self.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        drop(state);
        self.rx_waker.wake();
        Ok(())
    }

    /// Pushes an item, waiting for room if the queue is full; gives it back if the queue is closed.
    pub async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
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
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.items.len() + state.reserved >= self.capacity {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(Permit { queue: self })
    }

    /// Pops the next item if there is one. When the queue becomes empty its buffer is released,
    /// so that a queue that is not in use holds no memory.
    pub fn try_recv(&self) -> Option<T> {
        let mut state = self.lock();
        let item = state.items.pop_front();
        if item.is_some() {
            if state.items.is_empty() {
                state.items = VecDeque::new();
            }
            drop(state);
            self.space.notify_waiters();
        }
        item
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
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Closes the queue: pushes fail from now on, the items already queued can still be received.
    pub fn close(&self) {
        self.lock().closed = true;
        self.closed.store(true, Ordering::Release);
        self.rx_waker.wake();
        self.space.notify_waiters();
        self.closed_notify.notify_waiters();
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
    fn releases_its_buffer_when_emptied() {
        let q = Queue::new(1024);
        assert_eq!(q.lock().items.capacity(), 0);
        for i in 0..100 {
            q.try_send(i).unwrap();
        }
        while q.try_recv().is_some() {}
        assert_eq!(q.lock().items.capacity(), 0);
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
    }
}
