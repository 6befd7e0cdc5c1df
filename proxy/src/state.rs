//! The one state every handler shares.

use std::sync::atomic::AtomicUsize;
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
    pub scrapes_in_progress: Arc<AtomicUsize>,
    /// Scrapes passed on to the balancer's next server.
    pub passing: Passing,
}
