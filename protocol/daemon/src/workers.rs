//! Threads kept and reused: a task goes to a thread that is idle right now, or to a new one.
//! Nothing ever queues behind a task that blocks (a held poll, a slow target), and a busy
//! process does not pay for a thread's creation and teardown on every task. The proxy runs
//! its request handlers on it, the client its scrapes.

use std::io;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::handoff::{handoff, Sender};
use crate::sync::lock;

/// A unit of work: one request to serve, one scrape to perform.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// An elastic pool of named threads.
pub struct Workers {
    /// The idle threads, each waiting on its own hand-off; the one idle last is taken first,
    /// its stack and caches still warm.
    idle: Arc<Mutex<Vec<Sender<Task>>>>,
    name: &'static str,
    stack: usize,
    idle_for: Duration,
}

impl Workers {
    /// Threads named `name` with `stack` bytes of stack, each ending after `idle_for` without
    /// work.
    pub fn new(name: &'static str, stack: usize, idle_for: Duration) -> Self {
        Workers {
            idle: Arc::new(Mutex::new(Vec::new())),
            name,
            stack,
            idle_for,
        }
    }

    /// Runs `task` on an idle thread, or on a new one when none is idle.
    pub fn run(&self, mut task: Task) -> io::Result<()> {
        // A thread that just gave up waiting refuses the task; the next idle one gets it.
        // The list is locked only to take one: waking the thread is a system call, and other
        // threads going idle or handing out work must not queue behind it.
        loop {
            let Some(idle) = lock(&self.idle).pop() else {
                break;
            };
            match idle.send(task) {
                Ok(()) => return Ok(()),
                Err(t) => task = t,
            }
        }
        let idle = Arc::clone(&self.idle);
        let idle_for = self.idle_for;
        thread::Builder::new()
            .name(self.name.into())
            .stack_size(self.stack)
            .spawn(move || {
                let mut next = Some(task);
                while let Some(task) = next.take() {
                    task();
                    let (tx, rx) = handoff();
                    lock(&idle).push(tx);
                    next = match rx.recv_until(Instant::now() + idle_for) {
                        Ok(task) => Some(task),
                        // Closed first, so that a task handed over at this moment still runs.
                        Err(_) => {
                            let late = rx.close();
                            lock(&idle).retain(|tx| !tx.is_for(&rx));
                            late
                        }
                    };
                }
            })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        let (release_tx, release_rx) = handoff::<()>();
        pool.run(Box::new(move || {
            let _ = release_rx.recv_until(Instant::now() + Duration::from_secs(5));
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
