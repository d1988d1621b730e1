//! The edge's background tasks (expiry, slow consumers, re-registration, stats flush, the
//! webhook pump) and the guard that stops them: mini-redis's `DbDropGuard` habit. Each
//! task holds the edge's shared state, so without the guard a dropped edge would keep
//! running (and holding its store, bus and sockets' state) for the life of the process.
//! [`crate::Edge`] holds the guard; when its last clone is dropped the tasks are aborted.

use std::future::Future;

use parking_lot::Mutex;
use tokio::task::AbortHandle;

/// Aborts every task it spawned when dropped.
#[derive(Default)]
pub struct TaskGuard {
    tasks: Mutex<Vec<AbortHandle>>,
}

impl TaskGuard {
    /// Spawns `task` on the current Tokio runtime for as long as this guard lives.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        self.tasks.lock().push(handle);
    }

    /// Tasks spawned and still running.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.tasks.lock().iter().filter(|h| !h.is_finished()).count()
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_guard_stops_its_tasks() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let guard = TaskGuard::default();
        guard.spawn(async move {
            // Holds the sender until aborted; then the receiver sees the channel close.
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        assert_eq!(guard.running(), 1);
        drop(guard);
        assert_eq!(rx.recv().await, None, "the task was aborted and dropped its sender");
    }
}
