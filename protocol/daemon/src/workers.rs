//! Threads kept and reused: a task goes to a thread that is idle right now, or to a new one.
//! Nothing ever queues behind a task that blocks (a held poll, a slow target), and a busy
//! process does not pay for a thread's creation and teardown on every task. The proxy runs
//! its request handlers on it, the client its scrapes.

use std::io;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// A unit of work: one request to serve, one scrape to perform.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// An elastic pool of named threads.
pub struct Workers {
    tx: Sender<Task>,
    rx: Receiver<Task>,
    name: &'static str,
    stack: usize,
    idle_for: Duration,
}

impl Workers {
    /// Threads named `name` with `stack` bytes of stack, each ending after `idle_for` without
    /// work.
    pub fn new(name: &'static str, stack: usize, idle_for: Duration) -> Self {
        // Zero capacity: a hand-over succeeds only when a thread is waiting for work.
        let (tx, rx) = bounded(0);
        Workers {
            tx,
            rx,
            name,
            stack,
            idle_for,
        }
    }

    /// Runs `task` on an idle thread, or on a new one when none is idle.
    pub fn run(&self, task: Task) -> io::Result<()> {
        let task = match self.tx.try_send(task) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(task) | TrySendError::Disconnected(task)) => task,
        };
        let rx = self.rx.clone();
        let idle_for = self.idle_for;
        thread::Builder::new()
            .name(self.name.into())
            .stack_size(self.stack)
            .spawn(move || {
                task();
                while let Ok(next) = rx.recv_timeout(idle_for) {
                    next();
                }
            })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn idle_threads_are_reused_and_busy_ones_never_block_new_work() {
        let pool = Workers::new("test-worker", 64 * 1024, Duration::from_secs(5));
        let ids = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        for _ in 0..20 {
            let ids = ids.clone();
            pool.run(Box::new(move || {
                ids.lock().unwrap().insert(thread::current().id());
            }))
            .unwrap();
            // Let the thread go back to waiting.
            thread::sleep(Duration::from_millis(5));
        }
        assert!(ids.lock().unwrap().len() <= 2, "threads were not reused");

        // A task that blocks does not hold up the next one.
        let (release_tx, release_rx) = bounded::<()>(0);
        pool.run(Box::new(move || {
            let _ = release_rx.recv_timeout(Duration::from_secs(5));
        }))
        .unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        pool.run(Box::new(move || {
            d.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::SeqCst) == 0 && Instant::now() < until {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(done.load(Ordering::SeqCst), 1);
        release_tx.send(()).unwrap();
    }
}
