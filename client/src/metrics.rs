//! The client's own counters, their text exposition, and the small HTTP server on
//! `--metrics-addr` that serves them.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::ListenAddr;
use crate::error::StartupError;

/// How a scrape ended, for `pushprox_client_scrapes_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered (any status) and its response was relayed.
    Success,
    /// The target could not be reached or broke off its response.
    TargetError,
    /// The client would not perform the scrape: wrong host, port not in `--scrape.allow`, bad
    /// URL, no deadline header.
    Refused,
    /// The scrape's deadline passed.
    Timeout,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::TargetError,
        Outcome::Refused,
        Outcome::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::TargetError => "target_error",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Counters shared by every thread.
#[derive(Debug, Default)]
pub struct Metrics {
    scrape_errors: AtomicU64,
    push_errors: AtomicU64,
    poll_errors: AtomicU64,
    scrapes: [AtomicU64; 4],
    /// Milliseconds since the epoch; 0 until the first good poll.
    last_successful_poll_ms: AtomicU64,
    /// Polls sent and not answered yet, to every proxy.
    polls_open: AtomicUsize,
}

/// Counts a poll in `pushprox_client_polls_open` until dropped.
pub struct PollOpen<'a>(&'a Metrics);

impl Drop for PollOpen<'_> {
    fn drop(&mut self) {
        self.0.polls_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Records a finished scrape; every outcome but success also counts as a scrape error, as
    /// in the Go client.
    pub fn scrape_done(&self, outcome: Outcome) {
        self.scrapes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Success {
            self.scrape_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn push_failed(&self) {
        self.push_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn poll_failed(&self) {
        self.poll_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn poll_succeeded(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_successful_poll_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a poll open until the guard drops.
    pub fn poll_open(&self) -> PollOpen<'_> {
        self.polls_open.fetch_add(1, Ordering::Relaxed);
        PollOpen(self)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        };
        counter(
            &mut out,
            "pushprox_client_scrape_errors_total",
            "Scrapes that failed and were answered with a 500 (or 403) push (every outcome but success).",
            get(&self.scrape_errors),
        );
        counter(
            &mut out,
            "pushprox_client_push_errors_total",
            "Pushes of a scrape result to the proxy that failed.",
            get(&self.push_errors),
        );
        counter(
            &mut out,
            "pushprox_client_poll_errors_total",
            "Polls of the proxy that failed or got an answer that was not a scrape request.",
            get(&self.poll_errors),
        );
        out.push_str(
            "# HELP pushprox_client_scrapes_total Scrapes handed out by the proxy, by outcome: success (the target answered), target_error (unreachable or broken response), refused (wrong host, port not in --scrape.allow, bad URL or no deadline), timeout (deadline passed).\n\
             # TYPE pushprox_client_scrapes_total counter\n",
        );
        for outcome in Outcome::ALL {
            let _ = writeln!(
                out,
                "pushprox_client_scrapes_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                get(&self.scrapes[outcome as usize])
            );
        }
        let last_ms = get(&self.last_successful_poll_ms);
        let _ = write!(
            out,
            "# HELP pushprox_client_last_successful_poll_timestamp_seconds When a poll last got a scrape request or a 408 from a proxy, in seconds since the epoch; 0 if never.\n\
             # TYPE pushprox_client_last_successful_poll_timestamp_seconds gauge\n\
             pushprox_client_last_successful_poll_timestamp_seconds {}.{:03}\n",
            last_ms / 1000,
            last_ms % 1000
        );
        let _ = write!(
            out,
            "# HELP pushprox_client_polls_open Polls sent to the proxies and not answered yet. One per proxy when idle; more while extra pollers help our proxy (--proxy.max-polls).\n\
             # TYPE pushprox_client_polls_open gauge\n\
             pushprox_client_polls_open {}\n",
            self.polls_open.load(Ordering::Relaxed)
        );
        let _ = write!(
            out,
            "# HELP pushprox_client_build_info The version of this pushprox-client; always 1.\n\
             # TYPE pushprox_client_build_info gauge\n\
             pushprox_client_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

/// Binds `--metrics-addr`. `:PORT` binds every interface: IPv6 and IPv4 where the host has
/// both, IPv4 alone where it has no IPv6.
pub fn bind(addr: &ListenAddr) -> Result<TcpListener, StartupError> {
    let failed = |source| StartupError::MetricsBind {
        addr: addr.text.clone(),
        source,
    };
    match &addr.host {
        Some(host) => TcpListener::bind((host.as_str(), addr.port)).map_err(failed),
        None => {
            let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, addr.port));
            match TcpListener::bind(v6) {
                Ok(l) => Ok(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(failed(e)),
                Err(_) => {
                    let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, addr.port));
                    TcpListener::bind(v4).map_err(failed)
                }
            }
        }
    }
}

/// Serves `GET /metrics` and `GET /-/healthy` on `listener` from a thread of its own.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> Result<(), StartupError> {
    let addr_text = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let server = tiny_http::Server::from_listener(listener, None).map_err(|e| {
        StartupError::MetricsBind {
            addr: addr_text.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    log::info!("serving metrics on http://{addr_text}/metrics");
    std::thread::Builder::new()
        .name("metrics-http".into())
        .stack_size(crate::run::THREAD_STACK)
        .spawn(move || loop {
            // A deadline on the wait keeps the thread responsive; there is nothing else to do.
            match server.recv_timeout(Duration::from_secs(1)) {
                Ok(Some(request)) => answer(request, &metrics),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("metrics server: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .map_err(|e| StartupError::MetricsBind {
            addr: addr_text,
            source: e,
        })?;
    Ok(())
}

fn answer(request: tiny_http::Request, metrics: &Metrics) {
    use tiny_http::{Header, Method, Response};
    let get = matches!(request.method(), Method::Get | Method::Head);
    let path = request.url().split('?').next().unwrap_or("");
    let (status, content_type, body) = match (path, get) {
        ("/metrics", true) => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("/-/healthy", true) => (200, "text/plain; charset=utf-8", "OK".to_string()),
        ("/metrics" | "/-/healthy", false) => (
            405,
            "text/plain; charset=utf-8",
            "only GET is allowed here\n".to_string(),
        ),
        _ => (
            404,
            "text/plain; charset=utf-8",
            "not found: this is a pushprox-client; try /metrics or /-/healthy\n".to_string(),
        ),
    };
    let mut response = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes("Content-Type", content_type) {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("metrics server: writing a response failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_and_type_for_every_family() {
        let m = Metrics::default();
        m.scrape_done(Outcome::Success);
        m.scrape_done(Outcome::Refused);
        m.scrape_done(Outcome::Refused);
        m.poll_failed();
        let text = m.render();
        for name in [
            "pushprox_client_scrape_errors_total",
            "pushprox_client_push_errors_total",
            "pushprox_client_poll_errors_total",
            "pushprox_client_scrapes_total",
            "pushprox_client_last_successful_poll_timestamp_seconds",
            "pushprox_client_build_info",
            "pushprox_client_polls_open",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}\n{text}");
        }
        assert!(
            text.contains("pushprox_client_scrape_errors_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("pushprox_client_poll_errors_total 1\n"),
            "{text}"
        );
        assert!(text.contains("pushprox_client_scrapes_total{outcome=\"refused\"} 2\n"));
        assert!(text.contains("pushprox_client_scrapes_total{outcome=\"success\"} 1\n"));
        assert!(text.contains("pushprox_client_scrapes_total{outcome=\"timeout\"} 0\n"));
        assert!(text.contains("pushprox_client_last_successful_poll_timestamp_seconds 0.000\n"));
        assert!(text.ends_with('\n'));
        let open = m.poll_open();
        let also_open = m.poll_open();
        assert!(m.render().contains("pushprox_client_polls_open 2\n"));
        drop((open, also_open));
        assert!(m.render().contains("pushprox_client_polls_open 0\n"));
    }
}
