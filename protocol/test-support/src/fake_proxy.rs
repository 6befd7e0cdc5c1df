//! A proxy written by the test, for the client's tests: a loopback server speaking the
//! protocol (PROTOCOL.md sections 2 and 4) that answers each poll from a script the test
//! chooses, holds the polls the script has nothing for, and records every poll and push.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::Headers;

use crate::http::{raw_response, read_request, WAIT};
use crate::target::Server;

/// How long a poll the script has nothing for is held, unless it asks for its own hold.
const HOLD: Duration = Duration::from_secs(20);

/// A poll the fake proxy received.
#[derive(Debug)]
pub struct Poll {
    pub headers: Headers,
    /// The FQDN, as the client writes it.
    pub body: Vec<u8>,
    pub at: Instant,
    /// It asked for its connection to close (`Connection: close`).
    pub close: bool,
}

/// What the fake proxy saw.
#[derive(Debug)]
pub enum ProxyEvent {
    Poll(Poll),
    /// `close` as for a poll.
    Push {
        headers: Headers,
        body: Vec<u8>,
        close: bool,
    },
}

/// The answer to poll number `n` (from 0): the raw bytes of an HTTP response, or `None` to hold
/// the poll.
type Script = dyn Fn(usize) -> Option<Vec<u8>> + Send + Sync;

/// Answers polls from a script, then holds them: a poll that asks for a hold
/// (`X-PushProx-Hold`) gets a 408 after the proxy's `hold`, any other after 20 s or when the
/// proxy stops. Answers pushes 200, but 410 for a scrape id starting `late-` (one whose scrape
/// already gave up). Counts the polls open at once.
pub struct FakeProxy {
    server: Server,
    events: Receiver<ProxyEvent>,
    /// The most polls ever open at once.
    pub most_open: Arc<AtomicUsize>,
    /// The polls received so far.
    pub polls: Arc<AtomicUsize>,
}

/// What every connection thread of the fake proxy shares.
struct Shared {
    events: Mutex<Sender<ProxyEvent>>,
    script: Box<Script>,
    polls: Arc<AtomicUsize>,
    delay: Duration,
    hold: Duration,
    stop: Arc<AtomicBool>,
    open: AtomicUsize,
    most_open: Arc<AtomicUsize>,
}

impl FakeProxy {
    /// Answers the first polls with `answers`, in order.
    pub fn start(answers: Vec<Vec<u8>>) -> FakeProxy {
        FakeProxy::start_delayed(answers, Duration::ZERO)
    }

    /// Each of `answers` is sent `delay` after its poll arrived.
    pub fn start_delayed(answers: Vec<Vec<u8>>, delay: Duration) -> FakeProxy {
        let answers = Mutex::new(std::collections::VecDeque::from(answers));
        let script = move |_| answers.lock().unwrap().pop_front();
        FakeProxy::start_with(Box::new(script), delay, HOLD)
    }

    /// A poll asking for a hold (`X-PushProx-Hold`) and not answered by `answers` gets a 408
    /// after `hold`.
    pub fn start_holding(answers: Vec<Vec<u8>>, hold: Duration) -> FakeProxy {
        let answers = Mutex::new(std::collections::VecDeque::from(answers));
        let script = move |_| answers.lock().unwrap().pop_front();
        FakeProxy::start_with(Box::new(script), Duration::ZERO, hold)
    }

    /// Answers poll number `n` (from 0) with `script(n)`, or holds it when that is `None`.
    pub fn start_scripted(
        script: impl Fn(usize) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> FakeProxy {
        FakeProxy::start_with(Box::new(script), Duration::ZERO, HOLD)
    }

    fn start_with(script: Box<Script>, delay: Duration, hold: Duration) -> FakeProxy {
        let (tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let most_open = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            events: Mutex::new(tx),
            script,
            polls: Arc::clone(&polls),
            delay,
            hold,
            stop: Arc::clone(&stop),
            open: AtomicUsize::new(0),
            most_open: Arc::clone(&most_open),
        });
        let server = Server::start(stop, move |conn| serve(conn, &shared));
        FakeProxy {
            server,
            events,
            most_open,
            polls,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.server.addr)
    }

    /// The next poll or push, if one comes within `wait`.
    pub fn next_event_within(&self, wait: Duration) -> Option<ProxyEvent> {
        self.events.recv_timeout(wait).ok()
    }

    /// The next poll, skipping pushes.
    pub fn next_poll(&self) -> Poll {
        self.next_poll_within(WAIT)
            .expect("no poll reached the fake proxy in time")
    }

    pub fn next_poll_within(&self, wait: Duration) -> Option<Poll> {
        let until = Instant::now() + wait;
        loop {
            match self.next_event_within(until.saturating_duration_since(Instant::now()))? {
                ProxyEvent::Poll(poll) => return Some(poll),
                ProxyEvent::Push { .. } => continue,
            }
        }
    }

    /// The next push's body (a serialized response), skipping polls.
    pub fn next_push(&self) -> Vec<u8> {
        self.next_push_within(WAIT)
    }

    pub fn next_push_within(&self, wait: Duration) -> Vec<u8> {
        let until = Instant::now() + wait;
        loop {
            match self.next_event_within(until.saturating_duration_since(Instant::now())) {
                Some(ProxyEvent::Push { body, .. }) => return body,
                Some(ProxyEvent::Poll(_)) => continue,
                None => panic!("no push reached the fake proxy within {wait:?}"),
            }
        }
    }

    /// Waits for `n` pushes; returns the headers of the polls seen meanwhile.
    pub fn wait_pushes(&self, n: usize) -> Vec<Headers> {
        let until = Instant::now() + WAIT;
        let (mut pushes, mut polls) = (0, Vec::new());
        while pushes < n {
            match self.next_event_within(until.saturating_duration_since(Instant::now())) {
                Some(ProxyEvent::Poll(poll)) => polls.push(poll.headers),
                Some(ProxyEvent::Push { .. }) => pushes += 1,
                None => panic!("only {pushes} of {n} pushes reached the fake proxy in time"),
            }
        }
        polls
    }

    /// Whether the first two polls and the first push asked for `Connection: close`, in
    /// whatever order they came.
    pub fn closes_of_two_polls_and_a_push(&self) -> (bool, bool, bool) {
        let until = Instant::now() + WAIT;
        let (mut polls, mut push) = (Vec::new(), None);
        while polls.len() < 2 || push.is_none() {
            match self.next_event_within(until.saturating_duration_since(Instant::now())) {
                Some(ProxyEvent::Poll(poll)) => polls.push(poll.close),
                Some(ProxyEvent::Push { close, .. }) => push = push.or(Some(close)),
                None => panic!("no poll or push reached the fake proxy in time"),
            }
        }
        (polls[0], push.unwrap_or_default(), polls[1])
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some((head, body)) = read_request(&mut reader) {
        let close = head
            .headers
            .get("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let answer = match head.path.as_str() {
            "/poll" => {
                let now_open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
                shared.most_open.fetch_max(now_open, Ordering::SeqCst);
                let hold = match head.headers.get("X-PushProx-Hold") {
                    Some(_) => shared.hold,
                    None => HOLD,
                };
                let poll = Poll {
                    headers: head.headers,
                    body,
                    at: Instant::now(),
                    close,
                };
                let _ = shared.events.lock().unwrap().send(ProxyEvent::Poll(poll));
                let answer = match (shared.script)(shared.polls.fetch_add(1, Ordering::SeqCst)) {
                    Some(answer) => {
                        thread::sleep(shared.delay);
                        answer
                    }
                    None => {
                        let until = Instant::now() + hold;
                        while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                            thread::sleep(Duration::from_millis(10));
                        }
                        text(408, "poll held long enough")
                    }
                };
                // Closed before the answer goes out: the client's next poll can only follow it.
                shared.open.fetch_sub(1, Ordering::SeqCst);
                answer
            }
            "/push" => {
                let late = body.windows(11).any(|w| w == b"\r\nId: late-");
                let push = ProxyEvent::Push {
                    headers: head.headers,
                    body,
                    close,
                };
                let _ = shared.events.lock().unwrap().send(push);
                if late {
                    text(410, "Error pushing: scrape late-1 gave up")
                } else {
                    text(200, "")
                }
            }
            _ => text(404, "not found"),
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

fn text(status: u16, body: &str) -> Vec<u8> {
    raw_response(status, "Content-Type: text/plain\r\n", body.as_bytes())
}
