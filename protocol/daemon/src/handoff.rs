//! One value handed from one thread to another that waits for it: a scrape to a poll's
//! thread, a push to its scrape, a task to an idle worker. The waiter parks at once and the
//! sender wakes exactly it: no spinning and no `sched_yield` before sleeping, which is what a
//! general channel does and what costs most when every hand-off is a single value.
//!
//! Why not a crate: crossbeam-channel (linked) spins and yields before it sleeps; the
//! `oneshot` crate parks, but a value sent just before its receiver is dropped is dropped with
//! it, while a waiter that timed out here must [`Receiver::close`] and still get a value that
//! raced in (a poll, a push, a task), never lose it.

use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::Instant;

use crate::sync::lock;

enum State<T> {
    /// Nothing sent yet; the thread waiting for the value, once one waits.
    Empty(Option<Thread>),
    Full(T),
    /// The sender went away without sending.
    SenderGone,
    /// The receiver went away (or closed); a value sent now comes back.
    ReceiverGone,
    /// The receiver took the value.
    Taken,
}

/// The state both ends share. Nothing here panics while holding its lock; a poisoned one
/// still holds a valid state.
type Shared<T> = Mutex<State<T>>;

/// The sending end: sends one value, or says at its drop that none will come.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving end: waits for the one value until a deadline.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why no value was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The deadline passed first.
    Timeout,
    /// The sender went away without sending.
    Disconnected,
}

/// A new hand-off of one value.
pub fn handoff<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(State::Empty(None)));
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Hands `value` over and wakes the receiver; the value comes back when the receiver is
    /// gone or closed.
    pub fn send(self, value: T) -> Result<(), T> {
        let waiter = {
            let mut state = lock(&self.shared);
            match std::mem::replace(&mut *state, State::Taken) {
                State::Empty(waiter) => {
                    *state = State::Full(value);
                    waiter
                }
                other => {
                    *state = other;
                    return Err(value);
                }
            }
        };
        if let Some(t) = waiter {
            t.unpark();
        }
        Ok(())
    }

    /// Whether both ends are of the same hand-off.
    pub fn is_for(&self, receiver: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.shared, &receiver.shared)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waiter = {
            let mut state = lock(&self.shared);
            match &mut *state {
                State::Empty(waiter) => {
                    let waiter = waiter.take();
                    *state = State::SenderGone;
                    waiter
                }
                _ => None,
            }
        };
        if let Some(t) = waiter {
            t.unpark();
        }
    }
}

impl<T> Receiver<T> {
    /// Waits for the value until `deadline`.
    pub fn recv_until(&self, deadline: Instant) -> Result<T, RecvError> {
        loop {
            {
                let mut state = lock(&self.shared);
                match std::mem::replace(&mut *state, State::Taken) {
                    State::Full(v) => return Ok(v),
                    State::Empty(_) if Instant::now() < deadline => {
                        *state = State::Empty(Some(thread::current()));
                    }
                    State::Empty(_) => {
                        *state = State::Empty(None);
                        return Err(RecvError::Timeout);
                    }
                    other => {
                        // The sender gone, the value taken, or closed: nothing more will come.
                        *state = other;
                        return Err(RecvError::Disconnected);
                    }
                }
            }
            // A wake-up may be spurious, or come before this park: the loop looks again.
            thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// Refuses any later value, and returns one that arrived before: what a waiter that
    /// gave up calls, so that a value sent at that very moment is not lost.
    pub fn close(&self) -> Option<T> {
        let mut state = lock(&self.shared);
        match std::mem::replace(&mut *state, State::ReceiverGone) {
            State::Full(v) => Some(v),
            _ => None,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        *lock(&self.shared) = State::ReceiverGone;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_value_reaches_a_waiting_thread_and_a_late_one_comes_back() {
        let (tx, rx) = handoff::<u32>();
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            tx.send(7)
        });
        let got = rx.recv_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(got, Ok(7));
        assert_eq!(sender.join().unwrap(), Ok(()));

        let (tx, rx) = handoff::<u32>();
        let start = Instant::now();
        let got = rx.recv_until(start + Duration::from_millis(30));
        assert_eq!(got, Err(RecvError::Timeout));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(rx.close(), None);
        assert_eq!(tx.send(8), Err(8), "a closed receiver refuses the value");
    }

    #[test]
    fn a_value_sent_before_close_is_returned_and_a_dropped_sender_is_seen() {
        let (tx, rx) = handoff::<&str>();
        assert!(tx.is_for(&rx));
        tx.send("task").unwrap();
        assert_eq!(rx.close(), Some("task"));

        let (tx, rx) = handoff::<&str>();
        let dropper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            drop(tx);
        });
        let got = rx.recv_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(got, Err(RecvError::Disconnected));
        dropper.join().unwrap();
    }
}
