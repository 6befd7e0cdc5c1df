//! What every connection shares: the limits it is held to, the headers added to each answer,
//! the threads that serve connections, the count of open ones and the shares of the limit.
//! Nothing here knows a connection; the connection knows this.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::shares::Shares;
use super::HeadLimits;
use crate::reload::View;
use pushprox_daemon::workers::Workers;

/// How long an idle connection thread waits for work before it ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);
/// Stack of each connection thread: heads and bodies are read into heap buffers.
const CONNECTION_STACK: usize = 128 * 1024;

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub head: HeadLimits,
    /// Longest wait for the next request, for a whole head once it started, for each read of
    /// a body and each write; zero: none.
    pub read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// After this long from its accept, a connection's next answer closes it; zero: never.
    pub max_connection_age: Duration,
}

/// What every connection shares.
pub struct Shared {
    pub(super) limits: Limits,
    /// Headers added to every answer (`http_server_config.headers`), as last reloaded.
    extra_headers: View<Vec<(String, String)>>,
    /// The threads connections are served on.
    pub(super) workers: Workers,
    open: Arc<AtomicUsize>,
    pub(super) shares: Shares,
}

/// One open connection's place under `--web.max-connections`; freed when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub(super) fn new(
        limits: Limits,
        extra_headers: View<Vec<(String, String)>>,
        shares: Shares,
    ) -> Shared {
        Shared {
            limits,
            extra_headers,
            workers: Workers::new("connection", CONNECTION_STACK, WORKER_IDLE),
            open: Arc::new(AtomicUsize::new(0)),
            shares,
        }
    }

    /// Connections open now, parked polls included.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The headers added to every answer.
    pub(super) fn extra_headers(&self) -> Arc<Vec<(String, String)>> {
        self.extra_headers.get()
    }

    /// A place under `--web.max-connections`, if one is free.
    pub(super) fn take_slot(&self) -> Option<Slot> {
        let max = self.limits.max_connections;
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(&self.open)))
    }
}
