//! The proxy's own metrics, in the Prometheus text format.
//!
//! The Go proxy's names are kept for dashboards that exist; the rest is what an operator
//! needs to see whether scrapes get through, and why not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use pushprox_daemon::exposition::{header, single, Counters};
use pushprox_daemon::AtomicU64;

use crate::http::ShareRefusal;
use pushprox_daemon::sync::lock;

/// Upper bounds of the duration histograms (the client_golang defaults, as in Go).
/// The label the HTTP front gives scrape requests: they are counted by status in
/// `pushproxy_proxied_requests_total`, the proxy's own endpoints by path in
/// `pushprox_http_requests_total`.
pub const SCRAPE_LABEL: &str = "scrape";

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        // Every bucket, then +Inf, which holds every observation.
        let bounds = BUCKETS.iter().map(f64::to_string).chain(["+Inf".into()]);
        for (bound, n) in bounds.zip(self.counts.iter().chain([&self.count])) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

pushprox_daemon::label_values! {
    /// How a scrape through the proxy ended.
    pub enum ScrapeOutcome {
        /// The client's response was relayed to the scraper (whatever its status).
        Relayed => "relayed",
        /// No poll of the FQDN came before the deadline.
        NoPoll => "no_poll",
        /// The client took the scrape but did not push before the deadline.
        NoPush => "no_push",
        /// The push broke off, or the scraper hung up, while the body was relayed.
        RelayFailed => "relay_failed",
        /// The scrape request itself was unusable.
        BadRequest => "bad_request",
        /// The proxy was stopping.
        ShuttingDown => "shutting_down",
        /// The FQDN does not poll this proxy: passed on to a balancer's next server
        /// (`--scrape.unknown-fqdn-wait`).
        PassedOn => "passed_on",
    }
}

pushprox_daemon::label_values! {
    /// Why a request was refused for its credentials: the `reason` label of
    /// `pushprox_auth_failures_total`.
    pub enum AuthFailure {
        /// A poll or push without a bearer token.
        ClientTokenMissing => "client_token_missing",
        /// A poll or push whose token is not valid for its FQDN.
        ClientTokenWrong => "client_token_wrong",
        /// A scrape without Proxy-Authorization.
        ScrapeCredentialsMissing => "scrape_credentials_missing",
        /// A scrape with a wrong user or password.
        ScrapeCredentialsWrong => "scrape_credentials_wrong",
        /// A read of /clients, /metrics or / without Authorization (--auth.protect-api).
        ApiCredentialsMissing => "api_credentials_missing",
        /// A read of the API with a wrong user or password.
        ApiCredentialsWrong => "api_credentials_wrong",
        /// A scrape or API read refused with 429, unchecked: too many wrong passwords from its
        /// address (--auth.max-failures).
        TooManyFailures => "too_many_failures",
        /// A scrape or API read refused with 503, unchecked: the bcrypt queue was full
        /// (--auth.check-queue).
        PasswordChecksBusy => "password_checks_busy",
    }
}

pushprox_daemon::label_values! {
    /// Why a poll was refused for what it announced, or for want of room in the registry: the
    /// `reason` label of `pushprox_polls_refused_total` (`--registration.max-*`).
    pub enum PollRefused {
        /// An announcement header that is not what our client writes (bad JSON, label name, port).
        Invalid => "invalid_announcement",
        /// More labels than --registration.max-labels.
        Labels => "too_many_labels",
        /// A label name longer than --registration.max-label-name-length.
        NameLength => "label_name_too_long",
        /// A label value longer than --registration.max-label-value-length.
        ValueLength => "label_value_too_long",
        /// Target groups larger than --registration.max-label-bytes.
        Bytes => "label_bytes",
        /// More targets than --registration.max-targets.
        Targets => "too_many_targets",
        /// A new client beyond --registration.max-clients.
        RegistryFull => "registry_full",
    }
}

pushprox_daemon::label_values! {
    /// Why a scrape was refused before it reached a client: the `reason` label of
    /// `pushprox_scrapes_refused_total`.
    pub enum ScrapeRefused {
        /// A method other than GET or HEAD (405).
        Method => "method_not_allowed",
    }
}

/// Gauges read from elsewhere at exposition time.
pub struct Gauges {
    /// Clients listed in /clients.
    pub clients: usize,
    /// Of those, the ones with a poll held now or one that ended moments ago.
    pub clients_polling: usize,
    /// Polls held open.
    pub polls_waiting: usize,
    /// Scrapes waiting for a poll or a push.
    pub scrapes_waiting: usize,
    /// Connections open, parked polls included.
    pub open_connections: usize,
    /// Password checks computed (bcrypt or SHA-256), and logins answered from the cache.
    pub password_checks: u64,
    pub password_cache_hits: u64,
}

/// Counters and histograms, shared by every handler thread.
#[derive(Default)]
pub struct Metrics {
    http_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    http_durations: Mutex<BTreeMap<&'static str, Histogram>>,
    proxied: Mutex<BTreeMap<u16, u64>>,
    scrapes: Counters<ScrapeOutcome>,
    scrape_durations: Mutex<Histogram>,
    relayed_bytes: AtomicU64,
    rejected_busy: AtomicU64,
    late_pushes: AtomicU64,
    auth_failures: Counters<AuthFailure>,
    share_refusals: Counters<ShareRefusal>,
    polls_refused: Counters<PollRefused>,
    scrapes_refused: Counters<ScrapeRefused>,
}

impl Metrics {
    /// A request to one of the proxy's own endpoints was answered.
    pub fn http_request(&self, path: &'static str, code: u16, took: Duration) {
        *lock(&self.http_requests).entry((path, code)).or_default() += 1;
        lock(&self.http_durations)
            .entry(path)
            .or_default()
            .observe(took);
    }

    /// A scrape ended so.
    pub fn scrape(&self, outcome: ScrapeOutcome) {
        self.scrapes.add(outcome);
    }

    /// A scrape request was answered with `status` (as written: 499 when the scraper went
    /// away first), whatever refused or relayed it.
    pub fn proxied(&self, status: u16, took: Duration) {
        *lock(&self.proxied).entry(status).or_default() += 1;
        lock(&self.scrape_durations).observe(took);
    }

    /// Body bytes passed from a push to a scraper.
    pub fn relayed(&self, bytes: u64) {
        self.relayed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A push for a scrape that had already given up at its deadline (answered 410).
    pub fn late_push(&self) {
        self.late_pushes.fetch_add(1, Ordering::Relaxed);
    }

    /// A request refused because the proxy was at its connection limit.
    pub fn rejected_busy(&self) {
        self.rejected_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection refused its share of the connection limit.
    pub fn share_refused(&self, reason: ShareRefusal) {
        self.share_refusals.add(reason);
    }

    /// A request refused for its credentials.
    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures.add(reason);
    }

    /// A poll refused for its announcement or for a full registry.
    pub fn poll_refused(&self, reason: PollRefused) {
        self.polls_refused.add(reason);
    }

    /// A scrape refused before it reached a client.
    pub fn scrape_refused(&self, reason: ScrapeRefused) {
        self.scrapes_refused.add(reason);
    }

    /// The whole exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        header(
            &mut out,
            "pushprox_http_requests_total",
            "counter",
            "Requests to the proxy's own endpoints, by status code and path.",
        );
        for ((path, code), n) in lock(&self.http_requests).iter() {
            let _ = writeln!(
                out,
                "pushprox_http_requests_total{{code=\"{code}\",path=\"{path}\"}} {n}"
            );
        }
        header(&mut out, "pushprox_http_duration_seconds", "histogram", "Time to answer requests to the proxy's own endpoints (polls include their wait), by path.");
        for (path, h) in lock(&self.http_durations).iter() {
            h.render(
                &mut out,
                "pushprox_http_duration_seconds",
                &format!("path=\"{path}\""),
            );
        }
        header(&mut out, "pushproxy_proxied_requests_total", "counter", "Scrapes answered through the proxy, by the status code the scraper got (name kept from the Go proxy).");
        for (code, n) in lock(&self.proxied).iter() {
            let _ = writeln!(
                out,
                "pushproxy_proxied_requests_total{{code=\"{code}\"}} {n}"
            );
        }
        single(
            &mut out,
            "pushprox_proxy_clients",
            "gauge",
            "Clients that polled within --registration.timeout.",
            gauges.clients,
        );
        single(
            &mut out,
            "pushprox_proxy_clients_polling",
            "gauge",
            "Clients with a poll held open now (or one that ended within 10 s, for a scrape): pushprox_proxy_clients minus this is the clients that stopped polling and are not forgotten yet.",
            gauges.clients_polling,
        );
        self.scrapes.render(&mut out, "pushprox_scrapes_total", "outcome", "Scrapes through the proxy by outcome: relayed, no_poll (no client polled in time), no_push (the client did not answer in time), relay_failed, bad_request, shutting_down.");
        header(
            &mut out,
            "pushprox_scrape_duration_seconds",
            "histogram",
            "Time from a scrape's arrival to its answer.",
        );
        lock(&self.scrape_durations).render(&mut out, "pushprox_scrape_duration_seconds", "");
        single(
            &mut out,
            "pushprox_polls_waiting",
            "gauge",
            "Polls held open, waiting for a scrape.",
            gauges.polls_waiting,
        );
        single(
            &mut out,
            "pushprox_scrapes_waiting",
            "gauge",
            "Scrapes waiting for a poll or a push.",
            gauges.scrapes_waiting,
        );
        single(
            &mut out,
            "pushprox_open_connections",
            "gauge",
            "Connections open to the proxy, parked polls included (bounded by --web.max-connections).",
            gauges.open_connections,
        );
        single(
            &mut out,
            "pushprox_auth_password_checks_total",
            "counter",
            "Password checks computed (bcrypt on the --auth.check-workers threads, or salted SHA-256): logins neither cached nor refused unchecked.",
            gauges.password_checks,
        );
        single(
            &mut out,
            "pushprox_auth_password_cache_hits_total",
            "counter",
            "Logins answered from the cache of successful checks (--auth.cache-ttl), without bcrypt.",
            gauges.password_cache_hits,
        );
        single(
            &mut out,
            "pushprox_relayed_bytes_total",
            "counter",
            "Body bytes relayed from pushes to scrapers.",
            self.relayed_bytes.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "pushprox_late_pushes_total",
            "counter",
            "Pushes for scrapes that had already been answered at their deadline (410): targets slower than the scrape timeout, not errors of the network.",
            self.late_pushes.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "pushprox_rejected_busy_total",
            "counter",
            "Connections refused with 503 because the proxy was at --web.max-connections (or the open-files limit), or could not start a thread.",
            self.rejected_busy.load(Ordering::Relaxed),
        );
        self.share_refusals.render(&mut out, "pushprox_connections_refused_total", "reason", "Connections refused their share, by reason: idle_per_address (closed: --web.max-idle-per-address), parked_per_address (poll answered 503: --poll.max-parked-per-address), parked_share (poll answered 503: the rest is --web.reserved-connections).");
        self.auth_failures.render(&mut out, "pushprox_auth_failures_total", "reason", "Requests refused for missing or wrong credentials (--auth.client-tokens, --auth.scrape-users), by reason.");
        self.polls_refused.render(&mut out, "pushprox_polls_refused_total", "reason", "Polls refused for what they announce (--registration.max-labels, -label-name-length, -label-value-length, -label-bytes, -targets, or an invalid announcement) or because --registration.max-clients are registered, by reason.");
        self.scrapes_refused.render(&mut out, "pushprox_scrapes_refused_total", "reason", "Scrapes refused before they reached a client, by reason: method_not_allowed (a method other than GET or HEAD, 405).");
        header(
            &mut out,
            "pushprox_build_info",
            "gauge",
            "Always 1; the version of this proxy.",
        );
        let _ = writeln!(
            out,
            "pushprox_build_info{{version=\"{}\",implementation=\"pushprox-rs\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        pushprox_daemon::process::render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_go_names_and_counts() {
        let m = Metrics::default();
        m.http_request("/poll", 200, Duration::from_millis(3));
        m.scrape(ScrapeOutcome::Relayed);
        m.proxied(200, Duration::from_millis(20));
        m.scrape(ScrapeOutcome::NoPoll);
        m.proxied(504, Duration::from_secs(1));
        m.auth_failure(AuthFailure::ClientTokenWrong);
        m.auth_failure(AuthFailure::ClientTokenWrong);
        m.poll_refused(PollRefused::RegistryFull);
        let text = m.render(&Gauges {
            clients: 2,
            clients_polling: 1,
            polls_waiting: 1,
            scrapes_waiting: 0,
            open_connections: 3,
            password_checks: 4,
            password_cache_hits: 5,
        });
        for line in [
            "pushprox_http_requests_total{code=\"200\",path=\"/poll\"} 1",
            "pushproxy_proxied_requests_total{code=\"504\"} 1",
            "pushprox_proxy_clients 2",
            "pushprox_proxy_clients_polling 1",
            "pushprox_open_connections 3",
            "pushprox_auth_password_checks_total 4",
            "pushprox_auth_password_cache_hits_total 5",
            "pushprox_auth_failures_total{reason=\"client_token_wrong\"} 2",
            "pushprox_auth_failures_total{reason=\"scrape_credentials_missing\"} 0",
            "pushprox_scrapes_total{outcome=\"no_poll\"} 1",
            "pushprox_polls_refused_total{reason=\"registry_full\"} 1",
            "pushprox_polls_refused_total{reason=\"label_bytes\"} 0",
            "pushprox_scrape_duration_seconds_bucket{le=\"0.025\"} 1",
            "pushprox_scrape_duration_seconds_count 2",
            "pushprox_http_duration_seconds_bucket{path=\"/poll\",le=\"0.005\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
