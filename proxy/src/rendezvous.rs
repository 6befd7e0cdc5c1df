//! Where a client's poll meets a scrape, and a push meets the scrape that waits for it.
//!
//! Nothing here knows HTTP: a poll is any `P` (the proxy parks the poll's request itself), a
//! scrape any `S`. Per FQDN there is at most one parked poll, the newest (an older one comes
//! back to the caller to be answered as superseded), and a queue of scrapes waiting for a
//! poll, each on its own channel. A parked poll costs no thread: it is a value in a map
//! until a scrape takes it, so 10,000 idle clients do not need 10,000 waiting threads. Nor
//! does a scrape waiting for its push: registered under its id, it is a value until its push
//! takes it, or until its deadline, when [`Rendezvous::wait_expired`] gives it to the thread
//! that answers it. The rendezvous also holds the registry of known clients, so that whether
//! a client is live (seen lately, or a poll of it parked) is asked in one place.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pushprox_daemon::handoff::{handoff, RecvError, Sender};
use pushprox_daemon::sync::lock;
use pushprox_daemon::AtomicU64;

use crate::registry::{ClientInfo, Registry};

/// What became of an arriving poll.
#[derive(Debug)]
pub enum Arrival<P> {
    /// A waiting scrape took it; that scrape's thread answers it.
    Taken,
    /// It is parked until a scrape comes; older parked polls it replaces come back to be
    /// answered as superseded: every one of another client instance (a Go client has none,
    /// so each of its polls replaces the last), an older poll without a hold of the same
    /// instance when this one has none either, and the oldest of the same instance beyond
    /// [`MAX_POLLS_PER_CLIENT`].
    Parked {
        /// The polls it replaced.
        superseded: Vec<P>,
    },
    /// The proxy is stopping; the poll comes back to be answered so.
    ShuttingDown(P),
}

/// What a scrape found when it looked for a poll.
#[derive(Debug)]
pub enum Taken<P> {
    /// A poll to write the scrape onto.
    Poll(P),
    /// None came before the deadline. `stale` is a poll that arrived as the scrape gave up
    /// while a newer one was already parked: answer it as superseded.
    NoPoll {
        /// A poll to answer as superseded, rarely.
        stale: Option<P>,
    },
    /// The proxy is stopping.
    ShuttingDown,
}

/// Why a scrape reached no client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeError {
    /// No poll of the FQDN arrived before the deadline.
    NoPoll,
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

/// Most polls parked side by side for one FQDN (polls of one client instance, ours only).
pub const MAX_POLLS_PER_CLIENT: usize = 8;

/// Who sent a poll and how long it may be held: what decides which polls supersede which.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollerInfo {
    /// The client process's instance id (`X-PushProx-Poller`, ours); None for Go clients.
    pub instance: Option<String>,
    /// Longest hold the poll asked for (`X-PushProx-Hold`, ours); zero for none.
    pub hold: Duration,
}

struct Parked<P> {
    poll: P,
    since: Instant,
    info: PollerInfo,
}

/// Takes the parked polls for which `take` holds out of `parked`, in place (no allocation
/// when none is taken), keeping the order of the others.
fn take_where<P>(
    parked: &mut VecDeque<Parked<P>>,
    mut take: impl FnMut(&Parked<P>) -> bool,
) -> Vec<P> {
    let mut out = Vec::new();
    for _ in 0..parked.len() {
        if let Some(p) = parked.pop_front() {
            if take(&p) {
                out.push(p.poll);
            } else {
                parked.push_back(p);
            }
        }
    }
    out
}

struct Slot<P> {
    /// Parked polls, oldest first.
    parked: VecDeque<Parked<P>>,
    /// Scrapes waiting for a poll, oldest first, by ticket.
    scrapes: VecDeque<(u64, Sender<P>)>,
}

impl<P> Default for Slot<P> {
    fn default() -> Self {
        Slot {
            parked: VecDeque::new(),
            scrapes: VecDeque::new(),
        }
    }
}

struct WaitingScrape<S> {
    fqdn: String,
    deadline: Instant,
    /// Its place in `Waiting::by_deadline`.
    ticket: u64,
    /// The scrape itself (its scraper's connection), for the push that finishes it.
    stake: S,
}

/// Scrapes handed to a client, waiting for its push without a thread: by id, and by deadline
/// for the thread that answers those no push came for.
struct Waiting<S> {
    by_id: HashMap<String, WaitingScrape<S>>,
    by_deadline: BTreeMap<(Instant, u64), String>,
}

/// Ids of scrapes that gave up recently, so a late push gets a precise answer.
const REMEMBER_EXPIRED: usize = 4096;

/// The meeting point of polls (`P`), scrapes (`S`, waiting for their push without a thread
/// once handed to a client) and pushes.
pub struct Rendezvous<P, S> {
    slots: Mutex<HashMap<String, Slot<P>>>,
    waiting: Mutex<Waiting<S>>,
    /// Told when a scrape with an earlier deadline than all others starts waiting.
    earlier: Condvar,
    expired: Mutex<VecDeque<(String, String, Instant)>>,
    next_ticket: AtomicU64,
    shutting_down: AtomicBool,
    registry: Arc<Registry>,
}

impl<P: Send, S: Send> Rendezvous<P, S> {
    /// An empty meeting point of the clients `registry` knows.
    pub fn new(registry: Registry) -> Self {
        Rendezvous {
            registry: Arc::new(registry),
            slots: Mutex::new(HashMap::new()),
            waiting: Mutex::new(Waiting {
                by_id: HashMap::new(),
                by_deadline: BTreeMap::new(),
            }),
            earlier: Condvar::new(),
            expired: Mutex::new(VecDeque::new()),
            next_ticket: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// A poll of `fqdn` arrived: it goes to the oldest scrape waiting for one, or is parked.
    pub fn poll_arrived(&self, fqdn: &str, mut poll: P, info: PollerInfo) -> Arrival<P> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Arrival::ShuttingDown(poll);
        }
        let mut slots = lock(&self.slots);
        let slot = slots.entry(fqdn.to_string()).or_default();
        while let Some((_, tx)) = slot.scrapes.pop_front() {
            match tx.send(poll) {
                Ok(()) => return Arrival::Taken,
                // That scrape gave up a moment ago; try the next one.
                Err(p) => poll = p,
            }
        }
        let mut superseded: Vec<P> = take_where(&mut slot.parked, |p| {
            let same_client = info.instance.is_some() && p.info.instance == info.instance;
            // A client has one long poll without a hold (its primary) and may add extra
            // polls that end themselves; a new primary replaces an older one, which the
            // client gave up (its connection may be dead), but not the extras.
            let both_primary = info.hold.is_zero() && p.info.hold.is_zero();
            !same_client || both_primary
        });
        while slot.parked.len() >= MAX_POLLS_PER_CLIENT {
            if let Some(oldest) = slot.parked.pop_front() {
                superseded.push(oldest.poll);
            }
        }
        // Most FQDNs hold one poll: room for exactly that, not the four a deque starts with
        // (10,000 idle clients: 3 MiB).
        slot.parked.reserve_exact(1);
        slot.parked.push_back(Parked {
            poll,
            since: Instant::now(),
            info,
        });
        Arrival::Parked { superseded }
    }

    /// Takes the parked poll of `fqdn`, or waits for one until `deadline`.
    pub fn take_poll(&self, fqdn: &str, deadline: Instant) -> Taken<P> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Taken::ShuttingDown;
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let rx = {
            let mut slots = lock(&self.slots);
            let slot = slots.entry(fqdn.to_string()).or_default();
            // The newest poll: the one most likely still connected.
            if let Some(p) = slot.parked.pop_back() {
                return Taken::Poll(p.poll);
            }
            // Only a scrape that waits needs a hand-off (the common case needs none).
            let (tx, rx) = handoff::<P>();
            slot.scrapes.push_back((ticket, tx));
            rx
        };
        match rx.recv_until(deadline) {
            Ok(poll) => return Taken::Poll(poll),
            Err(RecvError::Disconnected) => return Taken::ShuttingDown,
            Err(RecvError::Timeout) => {}
        }
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get_mut(fqdn) {
            slot.scrapes.retain(|(t, _)| *t != ticket);
        }
        // A poll may have been sent between the time-out and the lock: park it again.
        let Some(late) = rx.close() else {
            return Taken::NoPoll { stale: None };
        };
        let slot = slots.entry(fqdn.to_string()).or_default();
        if slot.parked.is_empty() {
            // Its sender is unknown here; it is parked as a Go client's poll would be.
            slot.parked.push_back(Parked {
                poll: late,
                since: Instant::now(),
                info: PollerInfo::default(),
            });
            Taken::NoPoll { stale: None }
        } else {
            Taken::NoPoll { stale: Some(late) }
        }
    }

    /// Registers a scrape so that its push can find it: from now on the push takes `scrape`
    /// and finishes it; once [`Rendezvous::handed`], so does [`Rendezvous::wait_expired`] at
    /// `deadline`.
    pub fn expect_push(&self, id: &str, fqdn: &str, deadline: Instant, scrape: S) {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiting).by_id.insert(
            id.to_string(),
            WaitingScrape {
                fqdn: fqdn.to_string(),
                deadline,
                ticket,
                stake: scrape,
            },
        );
    }

    /// The scrape `id` was written onto a poll: it waits for its push until its deadline
    /// (unless its push took it already).
    pub fn handed(&self, id: &str) {
        let mut waiting = lock(&self.waiting);
        let Some(key) = waiting.by_id.get(id).map(|w| (w.deadline, w.ticket)) else {
            return;
        };
        let earliest = waiting
            .by_deadline
            .first_key_value()
            .is_none_or(|(first, _)| key < *first);
        waiting.by_deadline.insert(key, id.to_string());
        drop(waiting);
        if earliest {
            self.earlier.notify_all();
        }
    }

    /// Takes back a scrape that never reached a client; `None` when a push (with a guessed
    /// id) took it already.
    pub fn abandon(&self, id: &str) -> Option<S> {
        let mut waiting = lock(&self.waiting);
        let w = waiting.by_id.remove(id)?;
        waiting.by_deadline.remove(&(w.deadline, w.ticket));
        Some(w.stake)
    }

    /// Takes the scrape waiting for `id`, for its push to finish it.
    pub fn push(&self, id: &str) -> Result<S, PushError> {
        // Taken out of the waiting scrapes the same way as one given up before it was handed.
        if let Some(scrape) = self.abandon(id) {
            return Ok(scrape);
        }
        let expired = lock(&self.expired);
        Err(match expired.iter().rev().find(|(i, _, _)| i == id) {
            Some((_, fqdn, deadline)) => PushError::Expired {
                fqdn: fqdn.clone(),
                ago: deadline.elapsed(),
            },
            None => PushError::UnknownId,
        })
    }

    /// Waits, at most `wait`, until waiting scrapes reach their deadline, and takes them: no
    /// push came for them. Remembered a while, so that a late push gets a precise answer.
    pub fn wait_expired(&self, wait: Duration) -> Vec<S> {
        let until = Instant::now() + wait;
        let mut waiting = lock(&self.waiting);
        loop {
            let now = Instant::now();
            let first = waiting.by_deadline.first_key_value().map(|((d, _), _)| *d);
            match first {
                Some(deadline) if deadline <= now => break,
                _ if now >= until => return Vec::new(),
                first => {
                    let next = first.map_or(until, |d| d.min(until));
                    waiting = self
                        .earlier
                        .wait_timeout(waiting, next - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        let now = Instant::now();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        while let Some(entry) = waiting.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            if let Some(w) = waiting.by_id.remove(&id) {
                gone.push((id, w.fqdn, w.deadline));
                out.push(w.stake);
            }
        }
        drop(waiting);
        let mut expired = lock(&self.expired);
        for e in gone {
            if expired.len() == REMEMBER_EXPIRED {
                expired.pop_front();
            }
            expired.push_back(e);
        }
        out
    }

    /// The FQDN a waiting scrape is for.
    pub fn fqdn_of(&self, id: &str) -> Option<String> {
        lock(&self.waiting).by_id.get(id).map(|w| w.fqdn.clone())
    }

    /// When a waiting scrape gives up: its push's body must have arrived by then.
    pub fn deadline_of(&self, id: &str) -> Option<Instant> {
        lock(&self.waiting).by_id.get(id).map(|w| w.deadline)
    }

    /// Whether a poll of `fqdn` is parked now.
    pub fn has_poll(&self, fqdn: &str) -> bool {
        lock(&self.slots)
            .get(fqdn)
            .is_some_and(|s| !s.parked.is_empty())
    }

    /// The known clients, shared with each parked poll, which tells it when the poll ends.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The live clients (a poll of theirs parked, or seen within the registration timeout),
    /// sorted by FQDN.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.registry.live(|key| self.has_poll(key))
    }

    /// Whether `key` is a live client.
    pub fn is_known(&self, key: &str) -> bool {
        self.registry.is_known(key, self.has_poll(key))
    }

    /// Forgets the clients neither polling nor seen within the registration timeout;
    /// returns their FQDNs.
    pub fn forget_expired(&self) -> Vec<String> {
        self.registry.forget_expired(|key| self.has_poll(key))
    }

    /// Polls parked now.
    pub fn polls_waiting(&self) -> usize {
        // Counted when asked (for /metrics and the page), not kept beside the polls.
        let slots = lock(&self.slots);
        slots.values().map(|slot| slot.parked.len()).sum()
    }

    /// Scrapes waiting for a poll or a push.
    pub fn scrapes_waiting(&self) -> usize {
        lock(&self.waiting).by_id.len()
    }

    /// Takes the polls held past their own hold (`X-PushProx-Hold`) or past `max_hold`
    /// (zero: no limit), to be answered.
    pub fn expire_parked(&self, max_hold: Duration) -> Vec<(String, P)> {
        let now = Instant::now();
        // The shorter of the two holds that are set.
        let limit = |info: &PollerInfo| {
            [info.hold, max_hold]
                .into_iter()
                .filter(|hold| !hold.is_zero())
                .min()
        };
        self.take_parked(|p| limit(&p.info).is_some_and(|l| now.duration_since(p.since) >= l))
    }

    /// Takes the parked polls for which `gone` holds (their clients hung up), to be freed.
    pub fn take_parked_where(&self, gone: impl Fn(&P) -> bool) -> Vec<P> {
        let taken = self.take_parked(|p| gone(&p.poll));
        taken.into_iter().map(|(_, poll)| poll).collect()
    }

    /// Takes the parked polls for which `take` holds, each with its FQDN.
    fn take_parked(&self, take: impl Fn(&Parked<P>) -> bool) -> Vec<(String, P)> {
        let mut out = Vec::new();
        for (fqdn, slot) in lock(&self.slots).iter_mut() {
            let taken = take_where(&mut slot.parked, &take);
            out.extend(taken.into_iter().map(|poll| (fqdn.clone(), poll)));
        }
        out
    }

    /// Drops the entries of FQDNs with neither a parked poll nor a waiting scrape.
    pub fn forget_idle(&self) {
        lock(&self.slots).retain(|_, slot| !slot.parked.is_empty() || !slot.scrapes.is_empty());
    }

    /// Refuses new polls and scrapes, and gives back every parked poll to be answered.
    /// Scrapes already handed to a client may still receive their push.
    pub fn shut_down(&self) -> Vec<P> {
        self.shutting_down.store(true, Ordering::SeqCst);
        for slot in lock(&self.slots).values_mut() {
            // Waiting scrapes see their channel close and stop at once.
            slot.scrapes.clear();
        }
        self.take_parked_where(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    type R = Rendezvous<&'static str, String>;

    fn registry() -> Registry {
        Registry::new(Duration::from_secs(60), 100)
    }

    fn go() -> PollerInfo {
        PollerInfo::default()
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn parked_poll_is_taken_by_a_scrape_and_push_meets_the_scrape() {
        let r: Arc<R> = Arc::new(Rendezvous::new(registry()));
        assert!(matches!(
            r.poll_arrived("a", "poll-1", go()),
            Arrival::Parked { superseded } if superseded.is_empty()
        ));
        assert_eq!(r.polls_waiting(), 1);
        assert!(r.has_poll("a"));
        r.expect_push("id-1", "a", soon(2000), "scraper".to_string());
        assert!(matches!(
            r.take_poll("a", soon(2000)),
            Taken::Poll("poll-1")
        ));
        assert_eq!(r.polls_waiting(), 0);
        assert_eq!(r.fqdn_of("id-1").as_deref(), Some("a"));
        assert_eq!(r.scrapes_waiting(), 1);
        // The push takes the scrape, once.
        assert_eq!(r.push("id-1").unwrap(), "scraper");
        assert_eq!(r.push("id-1").unwrap_err(), PushError::UnknownId);
        assert_eq!(r.scrapes_waiting(), 0);
    }

    #[test]
    fn waiting_scrape_gets_the_next_poll() {
        let r: Arc<R> = Arc::new(Rendezvous::new(registry()));
        let r2 = r.clone();
        let scraper = thread::spawn(move || r2.take_poll("a", soon(3000)));
        while lock(&r.slots).get("a").is_none_or(|s| s.scrapes.is_empty()) {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(matches!(
            r.poll_arrived("a", "poll-2", go()),
            Arrival::Taken
        ));
        assert!(matches!(scraper.join().unwrap(), Taken::Poll("poll-2")));
        assert_eq!(r.polls_waiting(), 0);
    }

    #[test]
    fn scrape_without_poll_gives_up_at_its_deadline() {
        let r: R = Rendezvous::new(registry());
        let start = Instant::now();
        assert!(matches!(
            r.take_poll("nobody", soon(200)),
            Taken::NoPoll { stale: None }
        ));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(2),
            "{took:?}"
        );
        r.forget_idle();
        assert!(
            lock(&r.slots).is_empty(),
            "the gone scrape left nothing behind"
        );
        // A poll arriving afterwards is parked, not sent to the scrape that left.
        assert!(matches!(
            r.poll_arrived("nobody", "late", go()),
            Arrival::Parked { superseded } if superseded.is_empty()
        ));
    }

    #[test]
    fn newer_poll_supersedes_the_parked_one() {
        let r: R = Rendezvous::new(registry());
        r.poll_arrived("a", "old", go());
        match r.poll_arrived("a", "new", go()) {
            Arrival::Parked { superseded } => assert_eq!(superseded, ["old"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.polls_waiting(), 1);
        assert!(matches!(r.take_poll("a", soon(100)), Taken::Poll("new")));
    }

    #[test]
    fn polls_of_one_instance_stay_side_by_side_up_to_the_limit() {
        let r: R = Rendezvous::new(registry());
        let ours = |hold_ms| PollerInfo {
            instance: Some("i1".into()),
            hold: Duration::from_millis(hold_ms),
        };
        // A Go client's poll is replaced by ours, as by any newer poll.
        r.poll_arrived("a", "go", go());
        // Our primary, then extras (with a hold) beside it.
        let mut superseded = Vec::new();
        if let Arrival::Parked { superseded: s } = r.poll_arrived("a", "primary", ours(0)) {
            superseded.extend(s);
        }
        let names = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
        for name in names {
            if let Arrival::Parked { superseded: s } = r.poll_arrived("a", name, ours(5000)) {
                superseded.extend(s);
            }
        }
        // The Go poll went first, then the oldest of ours beyond the limit.
        assert_eq!(superseded, ["go", "primary"]);
        assert_eq!(r.polls_waiting(), MAX_POLLS_PER_CLIENT);
        // Scrapes take the newest first.
        assert!(matches!(r.take_poll("a", soon(100)), Taken::Poll("p7")));
        // A new primary of the same instance replaces an older primary (the client gave it
        // up), not the extras.
        r.poll_arrived("c", "primary-1", ours(0));
        r.poll_arrived("c", "extra", ours(5000));
        match r.poll_arrived("c", "primary-2", ours(0)) {
            Arrival::Parked { superseded } => assert_eq!(superseded, ["primary-1"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.take_poll("c", soon(100)),
            Taken::Poll("primary-2")
        ));
        assert!(matches!(r.take_poll("c", soon(100)), Taken::Poll("extra")));
        // Another instance (the client restarted) replaces them all.
        let other = PollerInfo {
            instance: Some("i2".into()),
            hold: Duration::ZERO,
        };
        match r.poll_arrived("a", "new", other) {
            Arrival::Parked { superseded } => {
                assert_eq!(superseded.len(), MAX_POLLS_PER_CLIENT - 1)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.polls_waiting(), 1);
        // A poll's own hold ends it, without a global limit.
        r.poll_arrived("b", "short", ours(10));
        thread::sleep(Duration::from_millis(20));
        assert_eq!(
            r.expire_parked(Duration::ZERO),
            vec![("b".to_string(), "short")]
        );
        assert_eq!(r.polls_waiting(), 1);
    }

    #[test]
    fn scrapes_no_push_came_for_are_taken_at_their_deadline_in_order() {
        let r: Arc<R> = Arc::new(Rendezvous::new(registry()));
        r.expect_push("later", "a", soon(300), "second".into());
        r.handed("later");
        // Registered after, due before: the waiting thread is woken for it.
        let r2 = r.clone();
        let waiter = thread::spawn(move || {
            let started = Instant::now();
            let first = r2.wait_expired(Duration::from_secs(5));
            (first, started.elapsed())
        });
        thread::sleep(Duration::from_millis(20));
        r.expect_push("sooner", "a", soon(60), "first".into());
        r.handed("sooner");
        let (first, took) = waiter.join().unwrap();
        assert_eq!(first, vec!["first".to_string()]);
        assert!(took < Duration::from_millis(250), "woke after {took:?}");
        assert_eq!(r.scrapes_waiting(), 1);
        assert_eq!(
            r.wait_expired(Duration::from_secs(5)),
            vec!["second".to_string()]
        );
        assert_eq!(r.scrapes_waiting(), 0);
        // Nothing due: it returns empty after its wait.
        assert!(r.wait_expired(Duration::from_millis(30)).is_empty());
        // A late push is told how late.
        match r.push("sooner") {
            Err(PushError::Expired { fqdn, .. }) => assert_eq!(fqdn, "a"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.push("never").unwrap_err(), PushError::UnknownId);
    }

    #[test]
    fn a_scrape_taken_by_its_push_or_abandoned_is_not_expired() {
        let r: R = Rendezvous::new(registry());
        r.expect_push("pushed", "a", soon(30), "scraper".into());
        r.expect_push("gone", "a", soon(30), "abandoned".into());
        // Not handed to a client yet: its deadline is its scrape thread's to keep.
        r.expect_push("waiting", "a", soon(10), "scraper thread".into());
        r.handed("pushed");
        assert_eq!(r.push("pushed").unwrap(), "scraper");
        // Handed after its push took it: nothing left to expire.
        r.handed("pushed");
        assert_eq!(r.abandon("gone").as_deref(), Some("abandoned"));
        assert_eq!(r.abandon("gone"), None);
        thread::sleep(Duration::from_millis(40));
        assert!(r.wait_expired(Duration::from_millis(10)).is_empty());
        assert_eq!(r.abandon("waiting").as_deref(), Some("scraper thread"));
        assert_eq!(r.scrapes_waiting(), 0);
        // An abandoned scrape never reached a client: its id is unknown, not late.
        assert_eq!(r.push("gone").unwrap_err(), PushError::UnknownId);
    }

    #[test]
    fn hold_limit_and_shutdown_give_polls_back() {
        let r: R = Rendezvous::new(registry());
        r.poll_arrived("a", "p-a", go());
        thread::sleep(Duration::from_millis(30));
        r.poll_arrived("b", "p-b", go());
        let expired = r.expire_parked(Duration::from_millis(20));
        assert_eq!(expired, vec![("a".to_string(), "p-a")]);
        assert_eq!(r.shut_down(), vec!["p-b"]);
        assert_eq!(r.polls_waiting(), 0);
        assert!(matches!(
            r.poll_arrived("c", "p-c", go()),
            Arrival::ShuttingDown("p-c")
        ));
        assert!(matches!(r.take_poll("c", soon(1000)), Taken::ShuttingDown));
    }
}
