//! The client's own counters and their text exposition; `metrics_server` serves them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use pushprox_daemon::exposition::{header, millis_as_seconds, single, Counters};
use pushprox_daemon::AtomicU64;

pushprox_daemon::label_values! {
    /// How a scrape ended, for `pushprox_client_scrapes_total{outcome}`.
    pub enum Outcome {
        /// The target answered (any status) and its response was relayed.
        Success => "success",
        /// The target could not be reached or broke off its response.
        TargetError => "target_error",
        /// The client would not perform the scrape: wrong host, port not in `--scrape.allow`, bad
        /// URL, no deadline header.
        Refused => "refused",
        /// The scrape's deadline passed.
        Timeout => "timeout",
    }
}

/// Counters shared by every thread.
#[derive(Debug, Default)]
pub struct Metrics {
    scrape_errors: AtomicU64,
    push_errors: AtomicU64,
    late_pushes: AtomicU64,
    poll_errors: AtomicU64,
    scrapes: Counters<Outcome>,
    /// Milliseconds since the epoch; 0 until the first good poll.
    last_successful_poll_ms: AtomicU64,
    /// Polls written to a proxy and not answered yet (liveness.rs).
    polls_open: AtomicUsize,
    /// Milliseconds since the epoch when a poll last opened or closed; 0 if none ever did.
    last_poll_open_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Metrics {
    /// Records a finished scrape; every outcome but success also counts as a scrape error, as
    /// in the Go client.
    pub fn scrape_done(&self, outcome: Outcome) {
        self.scrapes.add(outcome);
        if outcome != Outcome::Success {
            self.scrape_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn push_failed(&self) {
        self.push_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A push the proxy answered 410: its scrape had already given up. Not a push error.
    pub fn push_late(&self) {
        self.late_pushes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn poll_failed(&self) {
        self.poll_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn poll_succeeded(&self) {
        self.last_successful_poll_ms
            .store(now_ms(), Ordering::Relaxed);
    }

    /// A poll's request was written to a proxy: it is open until [`Metrics::poll_closed`].
    pub fn poll_opened(&self) {
        self.polls_open.fetch_add(1, Ordering::Relaxed);
    }

    /// An open poll ended; `held` if a proxy held it and answered it as a proxy does (not an
    /// error): only then was the client connected until now.
    pub fn poll_closed(&self, held: bool) {
        if held {
            self.last_poll_open_ms.store(now_ms(), Ordering::Relaxed);
        }
        self.polls_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// `pushprox_client_last_poll_open_timestamp_seconds` in milliseconds: now while a poll is
    /// open, else when the last one closed.
    fn last_poll_open_ms(&self) -> u64 {
        if self.polls_open.load(Ordering::Relaxed) > 0 {
            now_ms()
        } else {
            self.last_poll_open_ms.load(Ordering::Relaxed)
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        for (name, help, counter) in [
            (
                "pushprox_client_scrape_errors_total",
                "Scrapes that failed and were answered with a 500 (or 403) push (every outcome but success).",
                &self.scrape_errors,
            ),
            (
                "pushprox_client_push_errors_total",
                "Pushes of a scrape result to the proxy that failed.",
                &self.push_errors,
            ),
            (
                "pushprox_client_late_pushes_total",
                "Pushes that arrived after their scrape had given up at its deadline (the proxy answered 410): the target was slower than the scrape timeout. Not counted as push errors.",
                &self.late_pushes,
            ),
            (
                "pushprox_client_poll_errors_total",
                "Polls of the proxy that failed or got an answer that was not a scrape request.",
                &self.poll_errors,
            ),
        ] {
            single(&mut out, name, "counter", help, get(counter));
        }
        self.scrapes.render(
            &mut out,
            "pushprox_client_scrapes_total",
            "outcome",
            "Scrapes handed out by the proxy, by outcome: success (the target answered), target_error (unreachable or broken response), refused (wrong host, port not in --scrape.allow, bad URL or no deadline), timeout (deadline passed).",
        );
        single(
            &mut out,
            "pushprox_client_last_successful_poll_timestamp_seconds",
            "gauge",
            "When a poll last got a scrape request or a 408 from a proxy, in seconds since the epoch; 0 if never.",
            millis_as_seconds(get(&self.last_successful_poll_ms)),
        );
        single(
            &mut out,
            "pushprox_client_last_poll_open_timestamp_seconds",
            "gauge",
            "Now while a poll is open at a proxy (written and held until a scrape comes), else when the last one a proxy held ended (not one answered with an error), in seconds since the epoch; 0 if none ever was. time() minus this stays near 0 for a connected client, idle or not.",
            millis_as_seconds(self.last_poll_open_ms()),
        );
        single(
            &mut out,
            "pushprox_client_polls_open",
            "gauge",
            "Polls written to the proxies and not answered yet. One per proxy when idle; more while extra pollers help our proxy (--proxy.max-polls).",
            self.polls_open.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "pushprox_client_build_info",
            "gauge",
            "The version of this pushprox-client; always 1.",
        );
        let _ = writeln!(
            out,
            "pushprox_client_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
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
            "pushprox_client_last_poll_open_timestamp_seconds",
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
        assert!(text.contains("pushprox_client_last_poll_open_timestamp_seconds 0.000\n"));
        m.poll_opened();
        m.poll_closed(false);
        let text = m.render();
        assert!(
            text.contains("pushprox_client_last_poll_open_timestamp_seconds 0.000\n"),
            "a poll answered with an error does not count: {text}"
        );
        m.poll_opened();
        m.poll_opened();
        assert!(m.render().contains("pushprox_client_polls_open 2\n"));
        m.poll_closed(true);
        m.poll_closed(false);
        let text = m.render();
        assert!(text.contains("pushprox_client_polls_open 0\n"));
        let last = text
            .lines()
            .find_map(|l| l.strip_prefix("pushprox_client_last_poll_open_timestamp_seconds "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let now = now_ms() as f64 / 1000.0;
        assert!((now - last).abs() < 5.0, "{last} vs {now}");
    }
}
