//! Wiring: bind, build the state, route each request to its handler, sweep, shut down.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use pushprox_protocol::Framing;

use crate::auth::Auth;
use crate::config::Config;
use crate::handlers::{self, Guard};
use crate::http::{After, Connection, Front, HeadLimits, Limits, Request, Service};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::rendezvous::Rendezvous;
use crate::state::State;

/// Largest body declared by a request other than a push; nothing of ours takes more than
/// 1 KiB.
const MAX_OTHER_BODY: u64 = 1 << 20;

/// How long in-flight scrapes may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Stack of the janitor thread.
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
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
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
    let ok = match allowed {
        "POST" => method == "POST",
        _ => method == "GET" || method == "HEAD",
    };
    if ok {
        route
    } else {
        Route::WrongMethod(label(route), allowed)
    }
}

/// The metric label of a route; scrapes are counted by outcome instead (`""`).
fn label(route: Route) -> &'static str {
    match route {
        Route::Scrape => "",
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
struct Proxy {
    state: Arc<State>,
    /// The front, for its open-connection count in /metrics.
    front: OnceLock<Weak<Front>>,
}

impl Proxy {
    fn open_connections(&self) -> usize {
        self.front
            .get()
            .and_then(Weak::upgrade)
            .map_or(0, |f| f.open_connections())
    }
}

impl Service for Proxy {
    fn handle(&self, mut request: Request, mut conn: Connection) -> After {
        let state = &self.state;
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
                return handlers::text(conn, 413, &reason);
            }
        }
        let api = matches!(route, Route::Clients | Route::Metrics | Route::Index);
        if api {
            if let Err(refusal) = state.auth.api(request.header("Authorization")) {
                return handlers::refuse(state, &request, conn, Guard::Api, &refusal);
            }
        }
        match route {
            Route::Scrape => match state.auth.scraper(request.header("Proxy-Authorization")) {
                Ok(()) => handlers::scrape::handle(state, request, conn),
                Err(refusal) => handlers::refuse(state, &request, conn, Guard::Scraper, &refusal),
            },
            Route::Poll => handlers::poll::handle(state, request, conn),
            Route::Push => handlers::push::handle(state, request, conn),
            Route::Clients => handlers::clients::handle(state, conn),
            Route::Metrics => handlers::metrics::handle(state, self.open_connections(), conn),
            Route::Index => handlers::index::handle(state, conn),
            // 503 while stopping, so that a load balancer stops sending clients here.
            Route::Healthy if pushprox_daemon::signals::requested() => {
                handlers::text(conn, 503, "stopping")
            }
            Route::Healthy => handlers::text(conn, 200, "OK"),
            Route::WrongMethod(path, allowed) => {
                let reason = format!(
                    "{} is not allowed on {path}: use {allowed}",
                    request.method()
                );
                log::debug!("refused request: {reason}");
                handlers::text(conn, 405, &reason)
            }
            Route::Tunnel => {
                let reason = "CONNECT tunnels are not supported: scrape http:// targets through proxy_url, and add params: {_scheme: [https]} for TLS targets";
                handlers::text(conn, 405, reason)
            }
            Route::NotFound => {
                let reason = format!(
                    "no such endpoint {}: this proxy serves POST /poll, POST /push, GET /clients, GET /metrics, GET / and scrapes in absolute form (http://host:port/path)",
                    crate::redact::shown(request.target())
                );
                log::debug!("{reason}");
                handlers::text(conn, 404, &reason)
            }
        }
    }

    fn record(&self, label: &'static str, status: u16, took: Duration) {
        if !label.is_empty() {
            self.state.metrics.http_request(label, status, took);
        }
    }

    fn refused_busy(&self) {
        self.state.metrics.rejected_busy();
    }
}

/// Binds the listener and serves until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), String> {
    let auth = Auth::load(&config)?;
    let web = auth.web_config();
    let tls = match (&config.tls_cert, &config.tls_key, &web) {
        (Some(cert), Some(key), _) => {
            Some(crate::web_config::tls::from_files(cert, key).map_err(|e| e.to_string())?)
        }
        (_, _, Some(web)) => web.tls.clone(),
        _ => None,
    };
    let headers = web
        .as_ref()
        .map(|w| w.config.headers.clone())
        .unwrap_or_default();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = listen(&config.listen_addrs())?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the address of the listener: {e}"))?;
    log::info!(
        "listening address={bound} scheme={scheme} scrape.default-timeout={} scrape.max-timeout={} registration.timeout={} web.read-timeout={} push.max-body={}",
        pushprox_protocol::format_duration(config.scrape_default_timeout),
        pushprox_protocol::format_duration(config.scrape_max_timeout),
        pushprox_protocol::format_duration(config.registration_timeout),
        pushprox_protocol::format_duration(config.read_timeout),
        config.push_max_body,
    );
    if let Some(web) = &web {
        log::info!(
            "web config file={} tls={} client_auth={} basic_auth_users={} headers={}",
            web.config.path.display(),
            web.tls.is_some(),
            web.config
                .tls
                .as_ref()
                .map_or("NoClientCert".to_string(), |t| format!(
                    "{:?}",
                    t.client_auth
                )),
            web.config.users.as_ref().map_or(0, |u| u.len()),
            web.config.headers.len()
        );
    }
    let by_certificate = web
        .as_ref()
        .and_then(|w| w.config.tls.as_ref())
        .is_some_and(|t| t.client_auth.verifies());
    match &auth.clients {
        Some(t) => log::info!("clients must authenticate: {} FQDN pattern(s) in --auth.client-tokens", t.get().len()),
        None if by_certificate => log::info!("clients must authenticate: a client certificate naming the FQDN polled for (client_auth_type in --web.config.file)"),
        None => log::info!("clients are not authenticated: any client may poll for any FQDN (set --auth.client-tokens, or a verifying client_auth_type in --web.config.file)"),
    }
    let web_users = web.as_ref().and_then(|w| w.config.users.as_ref());
    match (&auth.scrapers, web_users) {
        (_, Some(users)) => log::info!(
            "scrapers and the API must authenticate: {} user(s) in basic_auth_users of --web.config.file{}",
            users.len(),
            if auth.scrapers.is_some() { ", and the users of --auth.scrape-users" } else { "" }
        ),
        (scrapers, None) => match scrapers {
        Some(u) => log::info!(
            "scrapers must authenticate: {} user(s) in --auth.scrape-users; API {}",
            u.len(),
            if auth.protect_api {
                "protected"
            } else {
                "open"
            }
        ),
        None => log::info!("scrapers are not authenticated (set basic_auth_users in --web.config.file, or --auth.scrape-users)"),
        },
    }
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
            max_headers: config.max_headers,
        },
        read_timeout: config.read_timeout,
        max_connections,
    };
    let state = Arc::new(State {
        auth,
        rendezvous: Rendezvous::new(),
        registry: Registry::new(config.registration_timeout),
        metrics: Metrics::default(),
        started: Instant::now(),
        config,
    });
    let proxy = Arc::new(Proxy {
        state: Arc::clone(&state),
        front: OnceLock::new(),
    });
    let front = Front::new(proxy.clone(), limits, tls, headers);
    let _ = proxy.front.set(Arc::downgrade(&front));
    if let Some(web) = &state.auth.web {
        follow_web_config(web.current(), Arc::downgrade(&front))?;
    }
    spawn_janitor(Arc::clone(&state))?;
    front
        .run(&listener, pushprox_daemon::signals::requested)
        .map_err(|e| format!("cannot accept connections on {bound}: {e}"))?;
    log::info!(
        "stopping: no new requests (polls and new scrapes get 503); waiting up to {}s for the pushes of in-flight scrapes",
        SHUTDOWN_GRACE.as_secs()
    );
    for poll in state.rendezvous.shut_down() {
        poll.answer(
            &state.registry,
            503,
            "the proxy is shutting down; poll again shortly",
        );
    }
    // Connections are still accepted, so that the pushes of scrapes in flight arrive; polls
    // and new scrapes are refused by the rendezvous from now on.
    let until = Instant::now() + SHUTDOWN_GRACE;
    front
        .run(&listener, || {
            state.rendezvous.scrapes_waiting() == 0 || Instant::now() >= until
        })
        .map_err(|e| format!("cannot accept connections on {bound}: {e}"))?;
    drop(listener);
    // Relays still streaming a body run on their own threads; give them a moment.
    let until = Instant::now() + Duration::from_secs(2);
    while state.rendezvous.scrapes_waiting() > 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    log::info!("stopped");
    Ok(())
}

/// How often the front looks for a reloaded web config.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Hands each newly loaded web config to the front: its TLS configuration for new
/// handshakes (open connections and parked polls keep theirs) and its response headers.
/// Users and client-certificate rules are read from the current config at each request.
fn follow_web_config(
    current: crate::web_config::reload::Current<crate::web_config::LoadedWebConfig>,
    front: Weak<Front>,
) -> Result<(), String> {
    let mut applied = current.get();
    thread::Builder::new()
        .name("web-config".into())
        .stack_size(JANITOR_STACK)
        .spawn(move || loop {
            thread::sleep(FOLLOW_EVERY);
            let Some(front) = front.upgrade() else {
                return;
            };
            let now = current.get();
            if Arc::ptr_eq(&now, &applied) {
                continue;
            }
            match (&now.tls, &applied.tls) {
                (Some(tls), Some(_)) => front.set_tls(Arc::clone(tls)),
                (None, None) => {}
                _ => log::warn!(
                    "{}: switching between HTTP and HTTPS needs a restart; the listener keeps its scheme (other changes apply)",
                    now.config.path.display()
                ),
            }
            front.set_extra_headers(now.config.headers.clone());
            applied = now;
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the web-config thread: {e}"))
}

/// Answers polls held past --poll.max-hold, frees polls whose clients hung up, forgets
/// clients past the registration timeout, and drops idle per-FQDN entries.
fn spawn_janitor(state: Arc<State>) -> Result<(), String> {
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
    thread::Builder::new()
        .name("janitor".into())
        .stack_size(JANITOR_STACK)
        .spawn(move || {
            let mut last_sweep = Instant::now();
            let mut last_gone = Instant::now();
            loop {
                thread::sleep(tick);
                for (fqdn, poll) in state.rendezvous.expire_parked(hold) {
                    let reason = format!("no scrape for {fqdn} within the poll's hold; poll again");
                    poll.answer(&state.registry, 408, &reason);
                }
                if last_gone.elapsed() >= GONE_SWEEP {
                    last_gone = Instant::now();
                    for poll in state.rendezvous.take_parked_where(|p| p.is_gone()) {
                        log::debug!("poll freed: its client hung up fqdn={}", poll.fqdn);
                        poll.drop_gone(&state.registry);
                    }
                }
                if last_sweep.elapsed() >= every {
                    last_sweep = Instant::now();
                    let polling = |key: &str| state.rendezvous.has_poll(key);
                    for fqdn in state.registry.forget_expired(polling) {
                        log::info!(
                            "client forgotten fqdn={fqdn} (no poll within --registration.timeout)"
                        );
                    }
                    state.rendezvous.forget_idle();
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the janitor thread: {e}"))
}

/// Binds the first of `addrs` that the host supports; an address in use ends the search.
fn listen(addrs: &[String]) -> Result<TcpListener, String> {
    let mut failure = String::from("no listen address");
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                failure = format!("cannot listen on {addr}: {e} (is another proxy running there? choose another address with -l)");
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    break;
                }
            }
        }
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_the_first_address_the_host_has_and_stops_at_one_in_use() {
        // 192.0.2.1 (TEST-NET-1) is no address of this host: binding it fails, with no traffic.
        let first = listen(&["192.0.2.1:0".into(), "127.0.0.1:0".into()]).unwrap();
        assert!(first.local_addr().unwrap().ip().is_loopback());
        let taken = first.local_addr().unwrap().to_string();
        let err = listen(&[taken.clone(), "127.0.0.1:0".into()]).unwrap_err();
        assert!(
            err.starts_with(&format!("cannot listen on {taken}: ")),
            "{err}"
        );
    }

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
