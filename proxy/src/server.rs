//! Wiring: bind, build the state, route each request to its handler, sweep, shut down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_daemon::listen::ListenError;
use pushprox_protocol::Framing;

use crate::auth::{Auth, Passwords};
use crate::config::Config;
use crate::error::StartupError;
use crate::handlers::{self, Guard};
use crate::http::{
    After, Connection, Front, HeadLimits, Limits, Request, Service, ShareLimits, ShareRefusal,
    Shares,
};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::reload::Reloader;
use crate::rendezvous::Rendezvous;
use crate::state::State;
use crate::web_config::{Settings, SettingsError};

/// Largest body declared by a request other than a push; nothing of ours takes more than
/// 1 KiB.
const MAX_OTHER_BODY: u64 = 1 << 20;

/// Stack of the janitor and deadlines threads.
const JANITOR_STACK: usize = 128 * 1024;
/// How often parked polls are checked for clients that hung up.
const GONE_SWEEP: Duration = Duration::from_secs(2);

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Scrape,
    Poll,
    Push,
    Clients,
    Metrics,
    Index,
    Healthy,
    WrongMethod(&'static str, &'static str),
    Tunnel,
    NotFound,
}

fn route(method: &str, target: &str) -> Route {
    if pushprox_protocol::is_absolute_url(target) {
        return Route::Scrape;
    }
    if method == "CONNECT" {
        return Route::Tunnel;
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let (route, allowed) = match path {
        "/poll" => (Route::Poll, "POST"),
        "/push" => (Route::Push, "POST"),
        "/clients" => (Route::Clients, "GET"),
        "/metrics" => (Route::Metrics, "GET"),
        "/" => (Route::Index, "GET"),
        "/-/healthy" | "/-/ready" => (Route::Healthy, "GET"),
        _ => return Route::NotFound,
    };
    // HEAD goes wherever GET does.
    if method == allowed || (allowed == "GET" && method == "HEAD") {
        route
    } else {
        Route::WrongMethod(label(route), allowed)
    }
}

/// The metric label of a route; scrapes are counted by outcome instead (`""`).
fn label(route: Route) -> &'static str {
    match route {
        Route::Scrape => crate::metrics::SCRAPE_LABEL,
        Route::Poll => "/poll",
        Route::Push => "/push",
        Route::Clients => "/clients",
        Route::Metrics => "/metrics",
        Route::Index => "/",
        Route::Healthy => "/-/healthy",
        Route::WrongMethod(path, _) => path,
        Route::Tunnel | Route::NotFound => "other",
    }
}

/// The PushProx endpoints, as the HTTP front's service.
impl Service for State {
    fn handle(&self, mut request: Request, mut conn: Connection) -> After {
        let state = self;
        // A scrape that a trusted balancer forwarded in origin form (issue 11).
        if let Some(target) =
            crate::trusted::apply(&state.config.trusted_proxies, conn.peer(), &mut request)
        {
            log::debug!(
                "scrape forwarded by from={} url={}",
                conn.peer(),
                crate::redact::shown(&target)
            );
        }
        let route = route(request.method(), request.target());
        conn.set_label(label(route));
        if let Framing::Length(n) = conn.body_framing() {
            if n > MAX_OTHER_BODY && route != Route::Push {
                let reason = format!("request body of {n} bytes is too large (limit {MAX_OTHER_BODY}; for pushes see --push.max-body)");
                log::warn!(
                    "refused {} {} from={}: {reason}",
                    request.method(),
                    crate::redact::shown(request.target()),
                    conn.peer()
                );
                return conn.respond_text(413, &[], &reason);
            }
        }
        if matches!(route, Route::Clients | Route::Metrics | Route::Index) {
            if let Err(refusal) = state
                .auth
                .api(request.header("Authorization"), conn.peer().ip())
            {
                return handlers::refuse(state, &request, conn, Guard::Api, &refusal);
            }
        }
        match route {
            Route::Scrape => match state
                .auth
                .scraper(request.header("Proxy-Authorization"), conn.peer().ip())
            {
                Ok(()) => handlers::scrape::handle(state, request, conn),
                Err(refusal) => handlers::refuse(state, &request, conn, Guard::Scraper, &refusal),
            },
            Route::Poll => handlers::poll::handle(state, request, conn),
            Route::Push => handlers::push::handle(state, request, conn),
            Route::Clients => handlers::clients::handle(state, conn),
            Route::Metrics => handlers::metrics::handle(state, conn.open_connections(), conn),
            Route::Index => handlers::index::handle(state, conn),
            // 503 while stopping, so that a load balancer stops sending clients here.
            Route::Healthy if pushprox_daemon::signals::requested() => {
                conn.respond_text(503, &[], "stopping")
            }
            Route::Healthy => conn.respond_text(200, &[], "OK"),
            Route::WrongMethod(path, allowed) => {
                let reason = format!(
                    "{} is not allowed on {path}: use {allowed}",
                    request.method()
                );
                log::debug!("refused request: {reason}");
                conn.respond_text(405, &[], &reason)
            }
            Route::Tunnel => {
                let reason = "CONNECT tunnels are not supported: scrape http:// targets through proxy_url, and add params: {_scheme: [https]} for TLS targets";
                conn.respond_text(405, &[], reason)
            }
            Route::NotFound => {
                let reason = format!(
                    "no such endpoint {}: this proxy serves POST /poll, POST /push, GET /clients, GET /metrics, GET / and scrapes in absolute form (http://host:port/path)",
                    crate::redact::shown(request.target())
                );
                log::debug!("{reason}");
                conn.respond_text(404, &[], &reason)
            }
        }
    }

    fn record(&self, label: &'static str, status: u16, took: Duration) {
        match label {
            crate::metrics::SCRAPE_LABEL => self.metrics.proxied(status, took),
            _ => self.metrics.http_request(label, status, took),
        }
    }

    fn refused_busy(&self) {
        self.metrics.rejected_busy();
    }

    fn refused_share(&self, reason: ShareRefusal) {
        self.metrics.share_refused(reason);
    }
}

/// The shares of the connection limit; trusted balancers are exempt from the per-address caps.
fn shares(config: &Config, max_connections: usize) -> Shares {
    let limits = ShareLimits {
        reserved: config.reserved_connections.min(max_connections / 2),
        idle_per_address: config.max_idle_per_address as usize,
        parked_per_address: config.max_parked_per_address as usize,
    };
    let trusted = config.trusted_proxies.clone();
    Shares::new(
        limits,
        max_connections,
        Box::new(move |ip| trusted.iter().any(|net| net.contains(ip))),
    )
}

/// How often the files the proxy was started with are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Binds the listener and serves until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), StartupError> {
    // One reload path: every file, one thread, one value that the front (at each handshake)
    // and the request checks read.
    let scheme_at_start: Arc<OnceLock<bool>> = Arc::new(OnceLock::new());
    let settings = {
        let config = config.clone();
        let scheme_at_start = Arc::clone(&scheme_at_start);
        Reloader::start("settings", RELOAD_EVERY, move || {
            let (settings, files) = Settings::load(&config)?;
            let tls = settings.tls.is_some();
            if *scheme_at_start.get_or_init(|| tls) != tls {
                return Err(SettingsError::SchemeChanged);
            }
            Ok((settings, files))
        })
        .map_err(StartupError::Settings)?
    };
    let current = settings.current();
    let loaded = current.get();
    let tls = loaded.tls.clone().map(|first| {
        current.view(move |s: &Settings| s.tls.clone().unwrap_or_else(|| Arc::clone(&first)))
    });
    let headers = current.view(|s: &Settings| Arc::clone(&s.headers));
    let passwords = Passwords::start(config.password_limits()).map_err(StartupError::Passwords)?;
    let auth = Auth::new(
        current.view(|s: &Settings| Arc::clone(&s.access)),
        passwords,
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = config.listen.bind().map_err(StartupError::Listen)?;
    let bound = listener.local_addr().map_err(|source| {
        StartupError::Listen(ListenError {
            addr: config.listen.text.clone(),
            source,
        })
    })?;
    log::info!(
        "listening address={bound} scheme={scheme} scrape.default-timeout={} scrape.max-timeout={} registration.timeout={} web.read-timeout={} push.max-body={}",
        pushprox_protocol::format_duration(config.scrape_default_timeout),
        pushprox_protocol::format_duration(config.scrape_max_timeout),
        pushprox_protocol::format_duration(config.registration_timeout),
        pushprox_protocol::format_duration(config.read_timeout),
        config.push_max_body,
    );
    if let Some(web) = &loaded.web {
        log::info!(
            "web config file={} tls={} client_auth={} basic_auth_users={} headers={}",
            web.path.display(),
            loaded.tls.is_some(),
            web.tls
                .as_ref()
                .map_or("NoClientCert".to_string(), |t| format!(
                    "{:?}",
                    t.client_auth
                )),
            loaded.web_users,
            web.headers.len()
        );
    }
    let access = &loaded.access;
    match &access.tokens {
        Some(t) => log::info!("clients must authenticate: {} FQDN pattern(s) in --auth.client-tokens", t.len()),
        None if access.client_certs.is_some() => log::info!("clients must authenticate: a client certificate naming the FQDN polled for (client_auth_type in --web.config.file)"),
        None => log::info!("clients are not authenticated: any client may poll for any FQDN (set --auth.client-tokens, or a verifying client_auth_type in --web.config.file)"),
    }
    match (loaded.web_users, loaded.file_users) {
        (0, 0) => log::info!("scrapers are not authenticated (set basic_auth_users in --web.config.file, or --auth.scrape-users)"),
        (0, n) => log::info!(
            "scrapers must authenticate: {n} user(s) in --auth.scrape-users; API {}",
            if access.protect_api { "protected" } else { "open" }
        ),
        (n, file) => log::info!(
            "scrapers and the API must authenticate: {n} user(s) in basic_auth_users of --web.config.file{}",
            if file > 0 { ", and the users of --auth.scrape-users" } else { "" }
        ),
    }
    let limits_pw = auth.passwords().limits();
    if access.users.is_some() {
        log::info!(
        "password checks: bcrypt on {} thread(s), {} queued at most, successes cached {} after last use, {} failures per address per {}",
        limits_pw.workers,
        limits_pw.queue,
        pushprox_protocol::format_duration(limits_pw.cache_ttl),
        limits_pw.max_failures,
        pushprox_protocol::format_duration(limits_pw.failure_interval),
    );
    }
    drop(loaded);
    let max_connections = match crate::limits::raise_open_files() {
        Some(open_files) => {
            let fit = crate::limits::connections_for(open_files);
            if fit < u64::from(config.max_connections) {
                log::warn!(
                    "the open-files limit ({open_files}) holds only {fit} connections, fewer than --web.max-connections={}: connections beyond {fit} get 503; raise the limit (ulimit -n, systemd LimitNOFILE=) to hold more clients",
                    config.max_connections
                );
            }
            fit.min(u64::from(config.max_connections)) as usize
        }
        None => config.max_connections as usize,
    };
    let limits = Limits {
        head: HeadLimits {
            max_bytes: config.max_head_bytes,
            max_headers: usize::from(config.max_headers),
        },
        read_timeout: config.read_timeout,
        max_connections,
        max_connection_age: config.max_connection_age,
    };
    let state = Arc::new(State {
        auth,
        rendezvous: Rendezvous::new(Registry::new(
            config.registration_timeout,
            config.registration.max_clients as usize,
        )),
        metrics: Metrics::default(),
        started: Instant::now(),
        config,
        scrapes_in_progress: Arc::new(AtomicUsize::new(0)),
        passing: Default::default(),
    });
    let front = Front::new(
        Arc::clone(&state) as Arc<dyn Service>,
        limits,
        tls,
        headers,
        shares(&state.config, max_connections),
    );
    spawn_janitor(Arc::clone(&state))?;
    spawn_deadlines(Arc::clone(&state))?;
    let accept_failed = |source| StartupError::Accept {
        addr: bound,
        source,
    };
    front
        .run(&listener, pushprox_daemon::signals::requested)
        .map_err(accept_failed)?;
    let parked = state.rendezvous.shut_down();
    log::info!(
        "stopping: no new requests: {} parked poll(s), and new polls and scrapes, answered 404 X-PushProx-Retry: next; waiting up to {} (--shutdown.timeout) for {} scrape(s) in progress",
        parked.len(),
        pushprox_protocol::format_duration(state.config.shutdown_timeout),
        state.scrapes_in_progress.load(Ordering::SeqCst)
    );
    for poll in parked {
        poll.come_back();
    }
    // Connections are still accepted, so that the pushes of scrapes in flight arrive; polls
    // and new scrapes are refused by the rendezvous from now on.
    let until = Instant::now() + state.config.shutdown_timeout;
    let in_progress = || state.scrapes_in_progress.load(Ordering::SeqCst);
    front
        .run(&listener, || in_progress() == 0 || Instant::now() >= until)
        .map_err(accept_failed)?;
    drop(listener);
    match in_progress() {
        0 => log::info!("stopped"),
        n => log::warn!("stopped with {n} scrape(s) still in progress after --shutdown.timeout; their scrapers get an error"),
    }
    Ok(())
}

/// Answers the scrapes handed to a client that got no push by their deadline.
fn spawn_deadlines(state: Arc<State>) -> Result<(), StartupError> {
    spawn("deadlines", move || loop {
        for pending in state.rendezvous.wait_expired(Duration::from_secs(1)) {
            pending.no_push(&state.metrics);
        }
    })
}

/// Answers polls held past --poll.max-hold, frees polls whose clients hung up, forgets
/// clients past the registration timeout, and drops idle per-FQDN entries.
fn spawn_janitor(state: Arc<State>) -> Result<(), StartupError> {
    let every = (state.config.registration_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(10));
    let hold = state.config.poll_max_hold;
    // Polls may ask for their own hold (X-PushProx-Hold), so they are checked often.
    let tick = if hold.is_zero() {
        Duration::from_millis(250)
    } else {
        (hold / 10).clamp(Duration::from_millis(20), Duration::from_millis(250))
    }
    .min(every);
    spawn("janitor", move || {
        let mut last_sweep = Instant::now();
        let mut last_gone = Instant::now();
        loop {
            thread::sleep(tick);
            for (fqdn, poll) in state.rendezvous.expire_parked(hold) {
                let reason = format!("no scrape for {fqdn} within the poll's hold; poll again");
                poll.answer(408, &[], &reason);
            }
            if last_gone.elapsed() >= GONE_SWEEP {
                last_gone = Instant::now();
                for poll in state.rendezvous.take_parked_where(|p| p.is_gone()) {
                    log::debug!("poll freed: its client hung up fqdn={}", poll.fqdn);
                    poll.drop_gone();
                }
            }
            if last_sweep.elapsed() >= every {
                last_sweep = Instant::now();
                for fqdn in state.rendezvous.forget_expired() {
                    log::info!(
                        "client forgotten fqdn={fqdn} (no poll within --registration.timeout)"
                    );
                }
                state.rendezvous.forget_idle();
            }
        }
    })
}

/// Starts the thread `what` running `body`.
fn spawn(what: &'static str, body: impl FnOnce() + Send + 'static) -> Result<(), StartupError> {
    thread::Builder::new()
        .name(what.into())
        .stack_size(JANITOR_STACK)
        .spawn(body)
        .map(|_| ())
        .map_err(|source| StartupError::Thread { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "http://h:9100/metrics"), Route::Scrape);
        assert_eq!(route("GET", "HTTPS://h/"), Route::Scrape);
        assert_eq!(route("POST", "/poll"), Route::Poll);
        assert_eq!(route("GET", "/poll"), Route::WrongMethod("/poll", "POST"));
        assert_eq!(route("GET", "/clients?x=1"), Route::Clients);
        assert_eq!(
            route("POST", "/clients"),
            Route::WrongMethod("/clients", "GET")
        );
        assert_eq!(route("CONNECT", "h:443"), Route::Tunnel);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
    }
}
