//! The one state every handler shares.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Auth;
use crate::config::Config;
use crate::delivery::PendingScrape;
use crate::metrics::Metrics;
use crate::parked::ParkedPoll;
use crate::passing::Passing;
use crate::rendezvous::Rendezvous;

/// Everything the handlers share.
pub struct State {
    /// The flags.
    pub config: Config,
    /// Where polls, scrapes and pushes meet.
    pub rendezvous: Rendezvous<ParkedPoll, PendingScrape>,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Start of the process, for the status page.
    pub started: Instant,
    /// Credentials of clients and scrapers.
    pub auth: Auth,
    /// Scrapes being handled, from arrival to the end of their relay: a stopping proxy exits
    /// when none is left.
    pub scrapes_in_progress: AtomicUsize,
    /// Scrapes passed on to the balancer's next server.
    pub passing: Passing,
}

impl State {
    /// Counts a scrape in [`State::scrapes_in_progress`] until the guard is dropped.
    pub fn scrape_started(self: &Arc<Self>) -> InProgress {
        self.scrapes_in_progress.fetch_add(1, Ordering::SeqCst);
        InProgress(Arc::clone(self))
    }
}

/// A scrape in progress, counted until dropped: it moves with the scrape from thread to
/// thread (the scrape's, the push's, the deadlines').
pub struct InProgress(Arc<State>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.scrapes_in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}
