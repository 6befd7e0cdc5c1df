//! Checking passwords fairly: bcrypt is slow on purpose (tens of milliseconds at cost 10), so
//! a peer sending wrong passwords must not take the time of the right ones.
//!
//! - Successes are cached by user and a digest of the password (SHA-256 with a per-process
//!   random salt; never the password) for `--auth.cache-ttl`, refreshed at each use, and the
//!   cache is emptied when the users change (a reload).
//! - Requests carrying the same user and password while one check of them runs wait for its
//!   answer (a Prometheus starting fifty scrapes at once runs bcrypt once, as behind the one
//!   lock of old).
//! - bcrypt runs on a small pool (`--auth.check-workers` threads, `--auth.check-queue` waiting
//!   checks), not behind one lock; a full queue is answered at once.
//! - Failures are limited per source address (an IPv6 address by its /64): beyond
//!   `--auth.max-failures` in `--auth.failure-interval`, checks from it are refused without
//!   running bcrypt until the interval ends. Checks in flight count against the budget too, so
//!   one source never has more than that many in the queue (refused for that alone, it is told
//!   to retry in a second). A refused source is logged once
//!   per interval with a count.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use pushprox_daemon::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use ring::rand::{SecureRandom, SystemRandom};

use super::users::{Secret, Users};
use super::{digest, Digest};
use crate::warn_limit::Throttle;
use pushprox_daemon::sync::lock;

/// Most cached successes; beyond, expired ones are dropped, then the cache starts over.
const CACHE_ENTRIES: usize = 1024;
/// Most source addresses tracked for failures; beyond, new sources are refused until entries
/// expire (a flood from that many addresses at once).
const MAX_SOURCES: usize = 16384;
/// Longest wait for a bcrypt check once queued.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);
/// Stack of a bcrypt thread (bcrypt's state is about 4 KiB).
const WORKER_STACK: usize = 128 * 1024;
/// How long an idle bcrypt thread waits before looking whether the checker is gone.
const WORKER_IDLE: Duration = Duration::from_secs(60);

/// The limits of password checking (flags `--auth.*`).
#[derive(Debug, Clone, Copy)]
pub struct PasswordLimits {
    /// bcrypt threads.
    pub workers: usize,
    /// Checks waiting for a bcrypt thread, beyond which a check is answered busy.
    pub queue: usize,
    /// How long a success stays cached after its last use.
    pub cache_ttl: Duration,
    /// Failed (or in-flight) checks a source may have per interval.
    pub max_failures: u32,
    /// The interval of `max_failures`.
    pub failure_interval: Duration,
}

/// The answer of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// Too many failures from this source: retry after this long.
    TooMany {
        retry_after: Duration,
    },
    /// Every bcrypt thread is busy and the queue is full.
    Busy,
}

/// Counts for /metrics.
#[derive(Debug, Default)]
pub struct PasswordCounts {
    pub cache_hits: AtomicU64,
    pub checks: AtomicU64,
}

struct Job {
    secrets: Vec<Secret>,
    password: String,
    reply: Sender<bool>,
}

/// The sources' failures, for the users of one generation: a reload forgives them (the
/// failures may have been a password that the reload just added).
#[derive(Default)]
struct Sources {
    users: u64,
    by_ip: HashMap<IpAddr, Budget>,
}

/// A check in flight that others with the same credentials wait for.
#[derive(Default)]
struct Pending {
    verdict: Mutex<Option<Verdict>>,
    done: Condvar,
}

impl Pending {
    /// The verdict, once the check is done; `None` after `within`.
    fn wait(&self, within: Duration) -> Option<Verdict> {
        let verdict = lock(&self.verdict);
        let (verdict, _) = self
            .done
            .wait_timeout_while(verdict, within, |v| v.is_none())
            .unwrap_or_else(|e| e.into_inner());
        *verdict
    }

    fn finish(&self, verdict: Verdict) {
        *lock(&self.verdict) = Some(verdict);
        self.done.notify_all();
    }
}

impl Sources {
    /// The budget of `source` for the interval of `now` (failures forgiven when the users
    /// changed or the interval ended); `None` when the table is full of live entries.
    fn budget(
        &mut self,
        users: u64,
        source: IpAddr,
        now: Instant,
        interval: Duration,
    ) -> Option<&mut Budget> {
        if self.users != users {
            self.users = users;
            for budget in self.by_ip.values_mut() {
                budget.failures = 0;
            }
        }
        let sources = &mut self.by_ip;
        if !sources.contains_key(&source) && sources.len() >= MAX_SOURCES {
            sources.retain(|_, b| b.in_flight > 0 || now.duration_since(b.started) < interval);
            if sources.len() >= MAX_SOURCES {
                return None;
            }
        }
        let budget = sources.entry(source).or_insert(Budget {
            started: now,
            failures: 0,
            in_flight: 0,
        });
        if now.duration_since(budget.started) >= interval {
            budget.started = now;
            budget.failures = 0;
        }
        Some(budget)
    }
}

/// A source's failures in the current interval.
struct Budget {
    started: Instant,
    failures: u32,
    in_flight: u32,
}

#[derive(Default)]
struct Cache {
    /// The generation of the users the entries were checked against.
    users: u64,
    until: HashMap<Digest, Instant>,
}

/// The password checker; one per process, shared by every request.
pub struct Passwords {
    limits: PasswordLimits,
    salt: [u8; 32],
    cache: Mutex<Cache>,
    sources: Mutex<Sources>,
    /// Checks in flight, by cache key.
    pending: Mutex<HashMap<Digest, Arc<Pending>>>,
    log: Mutex<Throttle>,
    jobs: Sender<Job>,
    pub counts: PasswordCounts,
}

impl Passwords {
    /// The checker and its `bcrypt-check` threads.
    pub fn start(limits: PasswordLimits) -> std::io::Result<Passwords> {
        let mut salt = [0u8; 32];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| std::io::Error::other("the kernel gave no random bytes for its salt"))?;
        let (jobs, queue) = bounded::<Job>(limits.queue.max(1));
        for i in 0..limits.workers.max(1) {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("bcrypt-check-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || work(&queue))?;
        }
        Ok(Passwords {
            limits,
            salt,
            cache: Mutex::default(),
            pending: Mutex::default(),
            sources: Mutex::default(),
            log: Mutex::default(),
            jobs,
            counts: PasswordCounts::default(),
        })
    }

    /// The limits it was started with.
    pub fn limits(&self) -> &PasswordLimits {
        &self.limits
    }

    /// Whether `password` is the password of `user` in `users`, asked from `source`.
    pub fn check(&self, users: &Users, user: &str, password: &str, source: IpAddr) -> Verdict {
        let key = self.key(user, password);
        if self.cached(users, &key, Instant::now()) {
            self.counts.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Verdict::Valid;
        }
        // The same user and password already being checked (a Prometheus starting fifty
        // scrapes at once): wait for that answer instead of running bcrypt again.
        let leader = match lock(&self.pending).entry(key) {
            Entry::Occupied(running) => Err(Arc::clone(running.get())),
            Entry::Vacant(slot) => Ok(Arc::clone(slot.insert(Arc::default()))),
        };
        let running = match leader {
            Ok(running) => running,
            Err(running) => match running.wait(CHECK_DEADLINE) {
                Some(Verdict::Valid) => {
                    self.counts.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Verdict::Valid;
                }
                Some(Verdict::Invalid) => {
                    self.note_failure(users.generation(), source_key(source));
                    return Verdict::Invalid;
                }
                // Refused or late for the first asker's reasons: ask in our own name.
                _ => return self.check_now(users, user, password, &key, source),
            },
        };
        let verdict = self.check_now(users, user, password, &key, source);
        lock(&self.pending).remove(&key);
        running.finish(verdict);
        verdict
    }

    /// Checks without looking for a check of the same credentials in flight.
    fn check_now(
        &self,
        users: &Users,
        user: &str,
        password: &str,
        key: &Digest,
        source: IpAddr,
    ) -> Verdict {
        let now = Instant::now();
        let source = source_key(source);
        if let Err(retry_after) = self.reserve(users.generation(), source, now) {
            self.log_refusal(source, now);
            return Verdict::TooMany { retry_after };
        }
        let (secrets, known) = users.secrets(user);
        self.counts.checks.fetch_add(1, Ordering::Relaxed);
        let matched = if secrets.iter().any(Secret::is_slow) {
            match self.on_pool(secrets, password) {
                Some(matched) => matched,
                None => {
                    self.release(source, false);
                    return Verdict::Busy;
                }
            }
        } else {
            secrets.iter().fold(false, |ok, s| s.matches(password) | ok)
        };
        let valid = matched & known;
        self.release(source, !valid);
        if valid {
            self.remember(users, *key, Instant::now());
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    /// The cache key: the salted digest of user and password (lengths keep "ab"+"c" apart
    /// from "a"+"bc").
    fn key(&self, user: &str, password: &str) -> Digest {
        let len = |s: &str| (s.len() as u64).to_be_bytes();
        digest(&[
            &self.salt,
            &len(user),
            user.as_bytes(),
            &len(password),
            password.as_bytes(),
        ])
    }

    /// Whether the key is cached for these users; a hit lives on for another TTL.
    fn cached(&self, users: &Users, key: &Digest, now: Instant) -> bool {
        let mut cache = lock(&self.cache);
        let id = users.generation();
        if cache.users != id {
            // Other users (a reload): nothing checked before counts.
            cache.users = id;
            cache.until.clear();
            return false;
        }
        match cache.until.get_mut(key) {
            Some(until) if *until > now => {
                *until = now + self.limits.cache_ttl;
                true
            }
            _ => false,
        }
    }

    fn remember(&self, users: &Users, key: Digest, now: Instant) {
        let mut cache = lock(&self.cache);
        if cache.users != users.generation() {
            return;
        }
        if cache.until.len() >= CACHE_ENTRIES {
            cache.until.retain(|_, until| *until > now);
        }
        if cache.until.len() >= CACHE_ENTRIES {
            // Still full of live entries: start over rather than grow.
            cache.until.clear();
        }
        cache.until.insert(key, now + self.limits.cache_ttl);
    }

    /// Counts a check in flight for `source`, or says how long until it may try again.
    fn reserve(&self, users: u64, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let interval = self.limits.failure_interval;
        let mut all = lock(&self.sources);
        let Some(budget) = all.budget(users, source, now, interval) else {
            return Err(interval);
        };
        if budget.failures + budget.in_flight >= self.limits.max_failures {
            // Full of checks still running (not of failures): one of them may free a place
            // within a second.
            if budget.failures < self.limits.max_failures {
                return Err(Duration::from_secs(1));
            }
            let left = interval.saturating_sub(now.duration_since(budget.started));
            return Err(left.max(Duration::from_secs(1)));
        }
        budget.in_flight += 1;
        Ok(())
    }

    /// Counts a failure of `source` that cost no check (it waited for one of the same
    /// credentials): a wrong password is a failure however it was found out.
    fn note_failure(&self, users: u64, source: IpAddr) {
        let interval = self.limits.failure_interval;
        let mut all = lock(&self.sources);
        if let Some(budget) = all.budget(users, source, Instant::now(), interval) {
            budget.failures += 1;
        }
    }

    /// Ends a check in flight; a failure stays counted until its interval ends.
    fn release(&self, source: IpAddr, failed: bool) {
        let mut all = lock(&self.sources);
        if let Some(budget) = all.by_ip.get_mut(&source) {
            budget.in_flight = budget.in_flight.saturating_sub(1);
            if failed {
                budget.failures += 1;
            }
        }
    }

    /// Runs bcrypt on the pool; `None` when the queue is full or the answer does not come in
    /// time.
    fn on_pool(&self, secrets: &[Secret], password: &str) -> Option<bool> {
        let (reply, answer) = bounded(1);
        let job = Job {
            secrets: secrets.to_vec(),
            password: password.to_string(),
            reply,
        };
        self.jobs.try_send(job).ok()?;
        answer.recv_timeout(CHECK_DEADLINE).ok()
    }

    /// Logs the refusals of sources over their budget: the first at once, then at most one
    /// line per interval, with how many there were.
    fn log_refusal(&self, source: IpAddr, now: Instant) {
        let interval = self.limits.failure_interval;
        if let Some(count) = lock(&self.log).due(now, interval) {
            log::warn!(
                "refused {count} password check(s) with 429 without running them, latest from={source}: more than --auth.max-failures={} failed checks from one address within --auth.failure-interval={} (next such line in {} at the earliest)",
                self.limits.max_failures,
                pushprox_protocol::format_duration(interval),
                pushprox_protocol::format_duration(interval),
            );
        }
    }
}

/// A bcrypt thread: checks until the checker is dropped.
fn work(queue: &Receiver<Job>) {
    loop {
        match queue.recv_timeout(WORKER_IDLE) {
            Ok(job) => {
                let matched = job
                    .secrets
                    .iter()
                    .fold(false, |ok, s| s.matches(&job.password) | ok);
                // The requester may have given up; nothing to do then.
                let _ = job.reply.send(matched);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The address failures are counted under: IPv4 as is, IPv6 by its /64 (one host usually
/// has a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    // An IPv4-mapped IPv6 address is its IPv4 address.
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::tests::quick_line;

    fn limits() -> PasswordLimits {
        PasswordLimits {
            workers: 2,
            queue: 8,
            cache_ttl: Duration::from_secs(60),
            max_failures: 3,
            failure_interval: Duration::from_secs(60),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn successes_are_cached_failures_are_limited_per_source() {
        let users = Users::parse(&quick_line("prom", "pw")).unwrap();
        let p = Passwords::start(limits()).unwrap();
        assert_eq!(p.check(&users, "prom", "pw", A), Verdict::Valid);
        assert_eq!(p.counts.checks.load(Ordering::Relaxed), 1);
        assert_eq!(p.check(&users, "prom", "pw", A), Verdict::Valid);
        assert_eq!(p.counts.checks.load(Ordering::Relaxed), 1, "cached");
        assert_eq!(p.counts.cache_hits.load(Ordering::Relaxed), 1);

        for _ in 0..3 {
            assert_eq!(p.check(&users, "prom", "wrong", B), Verdict::Invalid);
        }
        assert!(matches!(
            p.check(&users, "nobody", "x", B),
            Verdict::TooMany { .. }
        ));
        let checks = p.counts.checks.load(Ordering::Relaxed);
        let Verdict::TooMany { retry_after } = p.check(&users, "prom", "guess", B) else {
            panic!("source B is over its budget")
        };
        assert!(retry_after <= Duration::from_secs(60) && retry_after >= Duration::from_secs(1));
        assert_eq!(
            p.counts.checks.load(Ordering::Relaxed),
            checks,
            "no bcrypt ran"
        );
        // Another source, and the cached success, are unaffected.
        assert_eq!(p.check(&users, "prom", "wrong", A), Verdict::Invalid);
        assert_eq!(p.check(&users, "prom", "pw", A), Verdict::Valid);
        // A cached success from the limited source still passes.
        assert_eq!(p.check(&users, "prom", "pw", B), Verdict::Valid);
    }

    #[test]
    fn a_reload_empties_the_cache_and_forgives_failures() {
        let users = Users::parse(&quick_line("prom", "pw")).unwrap();
        let p = Passwords::start(limits()).unwrap();
        assert_eq!(p.check(&users, "prom", "pw", A), Verdict::Valid);
        for _ in 0..3 {
            assert_eq!(p.check(&users, "prom", "wrong", B), Verdict::Invalid);
        }
        assert!(matches!(
            p.check(&users, "prom", "new", B),
            Verdict::TooMany { .. }
        ));
        let changed = Users::parse(&quick_line("prom", "new")).unwrap();
        assert_eq!(p.check(&changed, "prom", "pw", A), Verdict::Invalid);
        // The reload forgave B's failures.
        assert_eq!(p.check(&changed, "prom", "new", B), Verdict::Valid);
        assert_eq!(p.check(&changed, "prom", "new", A), Verdict::Valid);
    }

    #[test]
    fn fifty_identical_logins_at_once_run_bcrypt_once() {
        let users = Users::parse(&quick_line("prom", "pw")).unwrap();
        let p = Passwords::start(limits()).unwrap();
        let verdicts: Vec<Verdict> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..50)
                .map(|_| scope.spawn(|| p.check(&users, "prom", "pw", A)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            verdicts.iter().all(|v| *v == Verdict::Valid),
            "{verdicts:?}"
        );
        // At most a few ran bcrypt (those that arrived between a check's end and its removal
        // from the table would find the cache); never one per request, never a 429.
        let computed = p.counts.checks.load(Ordering::Relaxed);
        assert!(computed <= 3, "{computed} checks computed");
    }

    #[test]
    fn waiting_on_a_wrong_password_counts_as_a_failure() {
        let users = Users::parse(&quick_line("prom", "pw")).unwrap();
        let p = Passwords::start(limits()).unwrap();
        let verdicts: Vec<Verdict> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20)
                .map(|_| scope.spawn(|| p.check(&users, "prom", "wrong", B)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let invalid = verdicts.iter().filter(|v| **v == Verdict::Invalid).count();
        assert!(invalid >= 1, "{verdicts:?}");
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Verdict::Invalid | Verdict::TooMany { .. })),
            "{verdicts:?}"
        );
        // However the 20 answers were found (one check, or a few), B is now over its budget.
        assert!(matches!(
            p.check(&users, "prom", "another guess", B),
            Verdict::TooMany { .. }
        ));
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_eq!(
            source_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
