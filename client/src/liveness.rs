//! When a poll is open at the proxy: from the moment its request has been written to the
//! proxy's connection (the proxy then holds it until a scrape comes) until its answer; a poll
//! answered at once with an error (a balancer with no proxy behind it) does not count. An idle,
//! connected client has a poll open all the time, so this, not the last scrape, is what tells
//! it is alive (`pushprox_client_polls_open`, `pushprox_client_last_poll_open_timestamp_seconds`).
//!
//! ureq is synchronous: the poll's own thread writes its request, so a thread-local tells the
//! connection's writes which poll (if any) they belong to. Writes of pushes and scrapes find
//! nothing there and count nothing.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Error;

use crate::metrics::Metrics;

/// A poll that ends in an error this long after its request was written was still held by
/// something until then (a proxy that died, a balancer's idle time-out); one answered sooner
/// (a balancer with no proxy behind it, answering 502 at once) was not.
const HELD_AT_LEAST: Duration = Duration::from_secs(1);

thread_local! {
    /// The poll this thread is sending, and when its request was written.
    static POLL: RefCell<Option<(Arc<Metrics>, Option<Instant>)>> = const { RefCell::new(None) };
}

/// Marks the poll sent on this thread; counted as open once written, until ended or dropped.
pub struct PollWatch(());

impl PollWatch {
    pub fn start(metrics: &Arc<Metrics>) -> PollWatch {
        POLL.with(|p| *p.borrow_mut() = Some((Arc::clone(metrics), None)));
        PollWatch(())
    }

    /// The poll ended; `answered` when a proxy answered it as a proxy does (a scrape, a 408,
    /// or nothing for the client's whole wait). Such a poll, or one that failed after
    /// [`HELD_AT_LEAST`], moves the liveness timestamp; a balancer answering every poll 502 at
    /// once does not make the client look alive.
    pub fn end(self, answered: bool) {
        close(answered);
    }
}

impl Drop for PollWatch {
    fn drop(&mut self) {
        close(false);
    }
}

fn close(answered: bool) {
    if let Some((metrics, Some(written))) = POLL.with(|p| p.borrow_mut().take()) {
        metrics.poll_closed(answered || written.elapsed() >= HELD_AT_LEAST);
    }
}

/// Called after each write to a proxy connection.
fn written() {
    POLL.with(|p| {
        if let Some((metrics, written)) = p.borrow_mut().as_mut() {
            if written.is_none() {
                *written = Some(Instant::now());
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
#[derive(Debug)]
pub struct Marked<T>(T);

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
