//! Where a client's poll meets a scrape, and a push meets the scrape that waits for it.
//!
//! Nothing here knows HTTP. Per FQDN there is one zero-capacity channel: a scrape thread
//! blocks sending its [`Job`] until a poll thread of that FQDN receives it (or the scrape's
//! deadline passes). The scrape thread then waits on its own channel, registered under the
//! scrape id, for the push. A newer poll of an FQDN supersedes a waiting one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, RecvTimeoutError, SendTimeoutError, Sender};

/// A scrape on its way to a client: the poll response body and when the scraper gives up.
#[derive(Debug)]
pub struct Job {
    /// The scrape id (the `Id` header).
    pub id: String,
    /// The FQDN the scrape is for (lower case).
    pub fqdn: String,
    /// The scrape request in proxy form: the body of the poll response.
    pub request: Vec<u8>,
    /// When the scraper stops waiting.
    pub deadline: Instant,
}

/// How a poll ended.
#[derive(Debug)]
pub enum PollOutcome {
    /// A scrape to perform.
    Scrape(Job),
    /// A newer poll of the same FQDN took over.
    Superseded,
    /// Nothing came within the hold limit.
    HeldTooLong,
    /// The proxy is stopping.
    ShuttingDown,
}

/// Why a scrape got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeError {
    /// No poll of the FQDN arrived before the deadline.
    NoPoll,
    /// A client took the scrape but no push came before the deadline.
    NoPush,
    /// The proxy is stopping.
    ShuttingDown,
}

/// Why a push could not be handed to a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// No scrape with this id was ever seen (or it was too long ago to remember).
    UnknownId,
    /// The scrape gave up this long ago.
    Expired {
        /// The FQDN the scrape was for.
        fqdn: String,
        /// Time since its deadline.
        ago: Duration,
    },
}

struct Slot {
    jobs_tx: Sender<Job>,
    jobs_rx: Receiver<Job>,
    /// The generation and cancel channel of the poll currently waiting, if any.
    current_poll: Mutex<Option<(u64, Sender<()>)>>,
    next_generation: AtomicU64,
}

struct WaitingScrape<D> {
    fqdn: String,
    tx: Sender<D>,
}

/// Ids of scrapes that gave up recently, so a late push gets a precise answer.
const REMEMBER_EXPIRED: usize = 4096;

/// The meeting point of polls, scrapes and pushes; `D` is what a push delivers.
pub struct Rendezvous<D> {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    waiting: Mutex<HashMap<String, WaitingScrape<D>>>,
    expired: Mutex<VecDeque<(String, String, Instant)>>,
    polls_waiting: AtomicUsize,
    shutting_down: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole proxy down with poisoned maps.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<D: Send> Default for Rendezvous<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Send> Rendezvous<D> {
    /// An empty meeting point.
    pub fn new() -> Self {
        Rendezvous {
            slots: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            expired: Mutex::new(VecDeque::new()),
            polls_waiting: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }

    fn slot(&self, fqdn: &str) -> Arc<Slot> {
        lock(&self.slots)
            .entry(fqdn.to_string())
            .or_insert_with(|| {
                let (jobs_tx, jobs_rx) = bounded(0);
                Arc::new(Slot {
                    jobs_tx,
                    jobs_rx,
                    current_poll: Mutex::new(None),
                    next_generation: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Waits for a scrape for `fqdn`, superseding any poll of it that is already waiting.
    /// `max_hold` of zero waits until a scrape comes, or shutdown.
    pub fn poll(&self, fqdn: &str, max_hold: Duration) -> PollOutcome {
        if self.shutting_down.load(Ordering::SeqCst) {
            return PollOutcome::ShuttingDown;
        }
        let slot = self.slot(fqdn);
        let generation = slot.next_generation.fetch_add(1, Ordering::SeqCst);
        let (cancel_tx, cancel_rx) = bounded::<()>(1);
        if let Some((_, older)) = lock(&slot.current_poll).replace((generation, cancel_tx)) {
            let _ = older.try_send(());
        }
        self.polls_waiting.fetch_add(1, Ordering::SeqCst);
        let hold = if max_hold.is_zero() {
            Duration::from_secs(365 * 86_400)
        } else {
            max_hold
        };
        let outcome = select! {
            recv(slot.jobs_rx) -> job => match job {
                Ok(job) => PollOutcome::Scrape(job),
                Err(_) => PollOutcome::ShuttingDown,
            },
            recv(cancel_rx) -> _ => {
                if self.shutting_down.load(Ordering::SeqCst) {
                    PollOutcome::ShuttingDown
                } else {
                    PollOutcome::Superseded
                }
            }
            default(hold) => PollOutcome::HeldTooLong,
        };
        self.polls_waiting.fetch_sub(1, Ordering::SeqCst);
        let still_current = {
            let mut current = lock(&slot.current_poll);
            let ours = current.as_ref().is_some_and(|(g, _)| *g == generation);
            if ours {
                *current = None;
            }
            ours
        };
        match outcome {
            // Won the race against a newer poll: give the scrape to the newer one.
            PollOutcome::Scrape(job) if !still_current => {
                self.requeue(job);
                PollOutcome::Superseded
            }
            other => other,
        }
    }

    /// Offers a job whose hand-over to a poll failed to the next poll of its FQDN, until its
    /// deadline. Returns false when no poll took it in time.
    pub fn requeue(&self, job: Job) -> bool {
        let Some(left) = job.deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        let slot = self.slot(&job.fqdn);
        slot.jobs_tx.send_timeout(job, left).is_ok()
    }

    /// Offers a scrape to the polls of `fqdn` and waits for its push, both until `deadline`.
    pub fn scrape(&self, job: Job) -> Result<D, ScrapeError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ScrapeError::ShuttingDown);
        }
        let (tx, rx) = bounded::<D>(1);
        let id = job.id.clone();
        let fqdn = job.fqdn.clone();
        let deadline = job.deadline;
        lock(&self.waiting).insert(
            id.clone(),
            WaitingScrape {
                fqdn: fqdn.clone(),
                tx,
            },
        );
        let slot = self.slot(&fqdn);
        let left = deadline.saturating_duration_since(Instant::now());
        let result = match slot.jobs_tx.send_timeout(job, left) {
            Err(SendTimeoutError::Timeout(_)) => Err(ScrapeError::NoPoll),
            Err(SendTimeoutError::Disconnected(_)) => Err(ScrapeError::ShuttingDown),
            Ok(()) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(d) => Ok(d),
                    Err(RecvTimeoutError::Timeout) => Err(ScrapeError::NoPush),
                    Err(RecvTimeoutError::Disconnected) => Err(ScrapeError::ShuttingDown),
                }
            }
        };
        drop(slot);
        if lock(&self.waiting).remove(&id).is_some() {
            let mut expired = lock(&self.expired);
            if expired.len() == REMEMBER_EXPIRED {
                expired.pop_front();
            }
            expired.push_back((id, fqdn, deadline));
        }
        result
    }

    /// Hands a push to the scrape waiting for `id`. On success the scrape thread owns the
    /// delivery; otherwise it comes back with the reason.
    pub fn push(&self, id: &str, delivery: D) -> Result<(), (PushError, D)> {
        let waiting = lock(&self.waiting).remove(id);
        match waiting {
            Some(w) => w.tx.try_send(delivery).map_err(|e| {
                let ago = Duration::ZERO;
                (PushError::Expired { fqdn: w.fqdn, ago }, e.into_inner())
            }),
            None => {
                let expired = lock(&self.expired);
                let err = match expired.iter().rev().find(|(i, _, _)| i == id) {
                    Some((_, fqdn, deadline)) => PushError::Expired {
                        fqdn: fqdn.clone(),
                        ago: deadline.elapsed(),
                    },
                    None => PushError::UnknownId,
                };
                Err((err, delivery))
            }
        }
    }

    /// The FQDN a waiting scrape is for.
    pub fn fqdn_of(&self, id: &str) -> Option<String> {
        lock(&self.waiting).get(id).map(|w| w.fqdn.clone())
    }

    /// Polls currently held open.
    pub fn polls_waiting(&self) -> usize {
        self.polls_waiting.load(Ordering::SeqCst)
    }

    /// Scrapes currently waiting for a poll or a push.
    pub fn scrapes_waiting(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Drops the channels of FQDNs nobody polls or scrapes any more.
    pub fn forget_idle(&self) {
        lock(&self.slots).retain(|_, slot| Arc::strong_count(slot) > 1);
    }

    /// Answers every waiting poll with [`PollOutcome::ShuttingDown`] and refuses new ones.
    /// Scrapes already handed to a client may still receive their push.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for slot in lock(&self.slots).values() {
            if let Some((_, cancel)) = lock(&slot.current_poll).as_ref() {
                let _ = cancel.try_send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn job(id: &str, fqdn: &str, ms: u64) -> Job {
        Job {
            id: id.into(),
            fqdn: fqdn.into(),
            request: id.as_bytes().to_vec(),
            deadline: Instant::now() + Duration::from_millis(ms),
        }
    }

    #[test]
    fn poll_meets_scrape_and_push_meets_scrape() {
        let r: Arc<Rendezvous<String>> = Arc::new(Rendezvous::new());
        let poller = {
            let r = r.clone();
            thread::spawn(move || match r.poll("a", Duration::from_secs(5)) {
                PollOutcome::Scrape(job) => {
                    r.push(&job.id, format!("body of {}", job.id)).unwrap();
                }
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(r.scrape(job("1", "a", 5000)).unwrap(), "body of 1");
        poller.join().unwrap();
        assert_eq!(r.scrapes_waiting(), 0);
    }

    #[test]
    fn scrape_without_poll_fails_at_its_deadline() {
        let r: Rendezvous<()> = Rendezvous::new();
        let start = Instant::now();
        assert_eq!(
            r.scrape(job("1", "nobody", 200)).unwrap_err(),
            ScrapeError::NoPoll
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn late_push_is_refused_with_its_age() {
        let r: Arc<Rendezvous<u8>> = Arc::new(Rendezvous::new());
        let r2 = r.clone();
        let poller = thread::spawn(move || match r2.poll("a", Duration::from_secs(5)) {
            PollOutcome::Scrape(job) => job.id,
            other => panic!("{other:?}"),
        });
        assert_eq!(
            r.scrape(job("late", "a", 100)).unwrap_err(),
            ScrapeError::NoPush
        );
        let id = poller.join().unwrap();
        match r.push(&id, 7) {
            Err((PushError::Expired { fqdn, .. }, 7)) => assert_eq!(fqdn, "a"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.push("never", 1), Err((PushError::UnknownId, 1))));
    }

    #[test]
    fn newer_poll_supersedes_older() {
        let r: Arc<Rendezvous<()>> = Arc::new(Rendezvous::new());
        let r2 = r.clone();
        let old = thread::spawn(move || r2.poll("a", Duration::from_secs(5)));
        while r.polls_waiting() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        let r3 = r.clone();
        let new = thread::spawn(move || r3.poll("a", Duration::from_secs(5)));
        assert!(matches!(old.join().unwrap(), PollOutcome::Superseded));
        // The scrape goes to the newer poll.
        let r4 = r.clone();
        let scraper = thread::spawn(move || r4.scrape(job("s", "a", 2000)));
        match new.join().unwrap() {
            PollOutcome::Scrape(job) => assert_eq!(job.id, "s"),
            other => panic!("{other:?}"),
        }
        assert_eq!(scraper.join().unwrap().unwrap_err(), ScrapeError::NoPush);
    }

    #[test]
    fn hold_limit_and_shutdown_end_polls() {
        let r: Arc<Rendezvous<()>> = Arc::new(Rendezvous::new());
        assert!(matches!(
            r.poll("a", Duration::from_millis(50)),
            PollOutcome::HeldTooLong
        ));
        let r2 = r.clone();
        let p = thread::spawn(move || r2.poll("b", Duration::ZERO));
        while r.polls_waiting() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        r.shut_down();
        assert!(matches!(p.join().unwrap(), PollOutcome::ShuttingDown));
        r.forget_idle();
        assert!(lock(&r.slots).is_empty());
    }

    #[test]
    fn failed_hand_over_goes_to_next_poll() {
        let r: Arc<Rendezvous<()>> = Arc::new(Rendezvous::new());
        let r2 = r.clone();
        let first = thread::spawn(move || r2.poll("a", Duration::from_secs(5)));
        let r3 = r.clone();
        let scraper = thread::spawn(move || r3.scrape(job("x", "a", 3000)));
        let PollOutcome::Scrape(job) = first.join().unwrap() else {
            panic!()
        };
        let r4 = r.clone();
        let second = thread::spawn(move || r4.poll("a", Duration::from_secs(5)));
        assert!(r.requeue(job), "the next poll takes it");
        match second.join().unwrap() {
            PollOutcome::Scrape(job) => assert_eq!(job.id, "x"),
            other => panic!("{other:?}"),
        }
        r.push("x", ()).unwrap();
        scraper.join().unwrap().unwrap();
    }
}
