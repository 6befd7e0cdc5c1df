//! `POST /push`: a client returns a scrape's response. The push's body is handed, still
//! unread, to the scrape thread, which streams it to the scraper; the push is answered when
//! the body has been relayed (or could not be).

use std::io::{self, BufRead, Read};
use std::time::Instant;

use pushprox_protocol::{BodyReader, ResponseHead, DEFAULT_MAX_HEAD, ID_HEADER};
use tiny_http::{Request, Response, StatusCode};

use crate::auth::Refusal;
use crate::metrics::ScrapeOutcome;
use crate::rendezvous::PushError;
use crate::server::State;
use std::sync::Arc;

/// What a push delivers to its scrape.
// Moved once per scrape through a channel; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Delivery {
    /// The target's response: its head, and the body still to be read.
    Pushed {
        /// Status line and headers of the target's response.
        head: ResponseHead,
        /// The body, read on demand from the push connection.
        body: PushBody,
    },
    /// The push was refused (too large): the scraper gets a 502 with this reason.
    Refused {
        /// One line for the scraper.
        reason: String,
    },
}

/// Start of the error a push body gives past --push.max-body.
const OVER_LIMIT: &str = "the push body is larger than --push.max-body";

/// A buffered reader over a push request's body that owns the request, so the request can
/// be answered once its body is consumed.
pub struct PushStream {
    request: Option<Request>,
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    /// Bytes read from the request so far, and the most allowed (--push.max-body).
    total: u64,
    limit: u64,
}

impl PushStream {
    fn new(request: Request, limit: u64) -> Self {
        PushStream {
            request: Some(request),
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            pos: 0,
            filled: 0,
            total: 0,
            limit,
        }
    }

    fn read_request(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = match self.request.as_mut() {
            Some(r) => r.as_reader().read(out)?,
            None => 0,
        };
        self.total += n as u64;
        if self.total > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{OVER_LIMIT} ({} bytes)", self.limit),
            ));
        }
        Ok(n)
    }
}

impl Read for PushStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled && out.len() >= self.buf.len() {
            return self.read_request(out);
        }
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for PushStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
            let mut buf = std::mem::take(&mut self.buf);
            let read = self.read_request(&mut buf);
            self.buf = buf;
            self.filled = read?;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }
}

/// Most bytes read past the pushed response to reach the end of the push request.
const MAX_DRAIN: usize = 1 << 20;

/// Reads what is left of a push request's own body (the last chunk of a chunked push comes
/// after the pushed response ends), so the keep-alive connection is at the next request.
fn drain(request: &mut Request) {
    let mut buf = [0u8; 8192];
    let mut left = MAX_DRAIN;
    while left > 0 {
        match request.as_reader().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The body of a push on its way to the scraper. Dropping it answers the push: `200` when
/// the whole body was relayed, an error status with the reason otherwise.
pub struct PushBody {
    reader: BodyReader<PushStream>,
    state: Arc<State>,
    id: String,
    fqdn: String,
    status: u16,
    error: Option<String>,
    answered: bool,
    /// When the scrape arrived, for the scrape duration; set by the scrape thread.
    pub scrape_started: Option<Instant>,
    push_started: Instant,
}

impl Read for PushBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.reader.read(out) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

impl PushBody {
    fn answer(&mut self, status: u16, reason: &str) {
        self.answered = true;
        let request = self.reader_request();
        if let Some(mut request) = request {
            drain(&mut request);
            let code = if status == 200 {
                let _ = request.respond(Response::empty(StatusCode(200)));
                200
            } else {
                super::text(request, status, reason)
            };
            self.state
                .metrics
                .http_request("/push", code, self.push_started.elapsed());
        }
    }

    fn reader_request(&mut self) -> Option<Request> {
        // BodyReader gives no &mut access to its inner reader; swap in an empty one.
        let empty = BodyReader::new(
            PushStream {
                request: None,
                buf: Box::new([]),
                pos: 0,
                filled: 0,
                total: 0,
                limit: 0,
            },
            pushprox_protocol::Framing::Length(0),
            None,
        );
        let reader = std::mem::replace(&mut self.reader, empty);
        reader.into_inner().request.take()
    }

    /// The status the scraper gets.
    pub fn status(&self) -> u16 {
        self.status
    }
}

impl Drop for PushBody {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let bytes = self.reader.bytes_read();
        let done = self.reader.is_done();
        self.state.metrics.relayed(bytes);
        let (outcome, push_status, reason) = match (&self.error, done) {
            (None, true) => (ScrapeOutcome::Relayed, 200, String::new()),
            (Some(e), _) => (
                ScrapeOutcome::RelayFailed,
                if e.starts_with(OVER_LIMIT) { 413 } else { 400 },
                format!(
                    "push body for scrape_id={} broke off after {bytes} bytes: {e}",
                    self.id
                ),
            ),
            (None, false) => (
                ScrapeOutcome::RelayFailed,
                502,
                format!(
                    "the scraper went away after {bytes} bytes of scrape_id={}",
                    self.id
                ),
            ),
        };
        if let Some(started) = self.scrape_started {
            self.state
                .metrics
                .scrape(outcome, self.status, started.elapsed());
        }
        if push_status == 200 {
            log::debug!(
                "scrape relayed fqdn={} scrape_id={} status={} bytes={bytes}",
                self.fqdn,
                self.id,
                self.status
            );
        } else {
            log::warn!(
                "relay failed fqdn={} scrape_id={}: {reason}",
                self.fqdn,
                self.id
            );
        }
        self.answer(push_status, &reason);
    }
}

/// Parses the pushed response head and hands the push to the scrape waiting for its id.
pub fn handle(state: &Arc<State>, request: Request) -> u16 {
    let started = Instant::now();
    let from = super::poll::peer(&request);
    let token = match state
        .auth
        .client_token(super::header_value(&request, "Authorization"))
    {
        Ok(t) => t.map(str::to_string),
        Err(refusal) => {
            let code = super::refuse(state, request, super::Guard::Client, &refusal);
            state.metrics.http_request("/push", code, started.elapsed());
            return code;
        }
    };
    let max = match state.config.push_max_body {
        0 => u64::MAX,
        max => max,
    };
    let declared = request.body_length().map(|n| n as u64);
    // The head is read within a limit of its own, even when --push.max-body is smaller.
    let mut stream = PushStream::new(request, max.max(DEFAULT_MAX_HEAD as u64));
    let head = ResponseHead::parse(&mut stream, DEFAULT_MAX_HEAD);
    stream.limit = max;
    let fail = |stream: PushStream, status: u16, reason: String| -> u16 {
        log::warn!("refused push from {from}: {reason}");
        let Some(request) = stream.request else {
            return status;
        };
        let code = super::text(request, status, &format!("Error pushing: {reason}"));
        state.metrics.http_request("/push", code, started.elapsed());
        code
    };
    let refuse = |mut stream: PushStream, refusal: Refusal| -> u16 {
        let Some(request) = stream.request.take() else {
            return 403;
        };
        let code = super::refuse(state, request, super::Guard::Client, &refusal);
        state.metrics.http_request("/push", code, started.elapsed());
        code
    };
    let head = match head {
        Ok(h) => h,
        Err(e @ pushprox_protocol::ProtocolError::HeadTooLarge { .. }) => {
            return fail(stream, 431, e.to_string())
        }
        Err(e) => return fail(stream, 400, e.to_string()),
    };
    let Some(id) = head.headers.get(ID_HEADER).map(str::to_string) else {
        return fail(
            stream,
            400,
            "the pushed response has no Id header: it must echo the Id of the scrape request"
                .into(),
        );
    };
    let framing = match head.framing() {
        Ok(f) => f,
        Err(e) => return fail(stream, 400, format!("scrape_id={id}: {e}")),
    };
    let fqdn = state.rendezvous.fqdn_of(&id);
    if let Some(fqdn) = &fqdn {
        if let Err(refusal) = state.auth.client_may(token.as_deref(), fqdn) {
            return refuse(stream, for_scrape(refusal, &id));
        }
    }
    let too_big = declared.is_some_and(|n| n > max)
        || matches!(framing, pushprox_protocol::Framing::Length(n) if n > max);
    if too_big {
        if let Some(fqdn) = &fqdn {
            let reason = format!(
                "Error scraping: the response of client {fqdn} is larger than the proxy's --push.max-body of {max} bytes"
            );
            let _ = state.rendezvous.push(&id, Delivery::Refused { reason });
        }
        return fail(
            stream,
            413,
            format!("scrape_id={id}: the push is larger than --push.max-body ({max} bytes)"),
        );
    }
    let body = PushBody {
        reader: BodyReader::new(stream, framing, None),
        state: state.clone(),
        id: id.clone(),
        fqdn: fqdn.unwrap_or_default(),
        status: head.status,
        error: None,
        answered: false,
        scrape_started: None,
        push_started: started,
    };
    match state.rendezvous.push(&id, Delivery::Pushed { head, body }) {
        Ok(()) => 200,
        Err((err, delivery)) => {
            let Delivery::Pushed { mut body, .. } = delivery else {
                return 500;
            };
            let (status, reason) = match err {
                PushError::UnknownId => (404, format!("Error pushing: no scrape with id {id} is waiting (unknown id, or it expired long ago)")),
                PushError::Expired { fqdn, .. } if state.auth.client_may(token.as_deref(), &fqdn).is_err() => {
                    let request = body.reader_request();
                    body.answered = true;
                    let Some(request) = request else { return 403 };
                    let refusal = for_scrape(Refusal::Wrong(format!("the bearer token is not valid for client {fqdn}")), &id);
                    let code = super::refuse(state, request, super::Guard::Client, &refusal);
                    state.metrics.http_request("/push", code, started.elapsed());
                    return code;
                }
                PushError::Expired { fqdn, ago } => (
                    410,
                    format!(
                        "Error pushing: scrape_id={id} for {fqdn} gave up {:.1}s ago at its deadline; the target answered too slowly for the scrape timeout",
                        ago.as_secs_f64()
                    ),
                ),
            };
            log::warn!("late or unknown push from {from} scrape_id={id}: {reason}");
            body.answer(status, &reason);
            status
        }
    }
}

/// Says which scrape a client's token was refused for.
fn for_scrape(refusal: Refusal, id: &str) -> Refusal {
    match refusal {
        Refusal::Wrong(r) => {
            Refusal::Wrong(format!("{r}, the FQDN that scrape_id={id} was sent to"))
        }
        missing => missing,
    }
}
