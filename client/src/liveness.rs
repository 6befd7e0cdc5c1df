//! When a poll is open at the proxy: from the moment its request has been written to the
//! proxy's connection (the proxy then holds it until a scrape comes) until its answer. An idle,
//! connected client has a poll open all the time, so this, not the last scrape, is what tells
//! it is alive (`pushprox_client_polls_open`, `pushprox_client_last_poll_open_timestamp_seconds`).
//!
//! ureq is synchronous: the poll's own thread writes its request, so a thread-local tells the
//! connection's writes which poll (if any) they belong to. Writes of pushes and scrapes find
//! nothing there and count nothing.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Error;

use crate::metrics::Metrics;

thread_local! {
    /// The poll this thread is sending, and whether its request has been written.
    static POLL: RefCell<Option<(Arc<Metrics>, bool)>> = const { RefCell::new(None) };
}

/// Marks the poll sent on this thread; counted as open once written, until dropped.
pub struct PollWatch(());

impl PollWatch {
    pub fn start(metrics: &Arc<Metrics>) -> PollWatch {
        POLL.with(|p| *p.borrow_mut() = Some((Arc::clone(metrics), false)));
        PollWatch(())
    }
}

impl Drop for PollWatch {
    fn drop(&mut self) {
        if let Some((metrics, true)) = POLL.with(|p| p.borrow_mut().take()) {
            metrics.poll_closed();
        }
    }
}

/// Called after each write to a proxy connection.
fn written() {
    POLL.with(|p| {
        if let Some((metrics, open)) = p.borrow_mut().as_mut() {
            if !*open {
                *open = true;
                metrics.poll_opened();
            }
        }
    });
}

/// The last connector of the proxy agents' chain: wraps each connection so that its writes
/// mark the poll being sent.
#[derive(Debug, Default)]
pub struct MarkPolls;

impl<In: Transport> Connector<In> for MarkPolls {
    type Out = Marked<In>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        Ok(chained.map(Marked))
    }
}

/// A connection whose writes mark the poll being sent.
pub struct Marked<T>(T);

impl<T: fmt::Debug> fmt::Debug for Marked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Transport> Transport for Marked<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.0.transmit_output(amount, timeout)?;
        written();
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.0.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}
