//! The listener, one named thread per request, and the routing of a request to its handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Method, Request, Server};

use crate::auth::Auth;
use crate::config::Config;
use crate::handlers::{self, poll::ParkedPoll, push::Delivery, Guard};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::rendezvous::Rendezvous;
use pushprox_daemon::workers::Workers;

/// Everything the handlers share.
pub struct State {
    /// The flags.
    pub config: Config,
    /// Where polls, scrapes and pushes meet.
    pub rendezvous: Rendezvous<ParkedPoll, Delivery>,
    /// Known clients.
    pub registry: Registry,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Start of the process, for the status page.
    pub started: Instant,
    /// Credentials of clients and scrapers.
    pub auth: Auth,
    /// Requests being served now.
    in_flight: AtomicUsize,
    /// --web.max-connections, lowered to what the open-files limit allows.
    max_connections: usize,
    /// The threads that serve them.
    workers: Workers,
}

/// How long an idle handler thread waits for work before it ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);
/// Stack of each handler thread: they parse heads and copy bodies in 16 KiB buffers.
const HANDLER_STACK: usize = 128 * 1024;
/// How long in-flight scrapes may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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

fn route(method: &Method, url: &str) -> Route {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Route::Scrape;
    }
    if *method == Method::Connect {
        return Route::Tunnel;
    }
    let path = url.split(['?', '#']).next().unwrap_or("");
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
        "POST" => *method == Method::Post,
        _ => *method == Method::Get || *method == Method::Head,
    };
    if ok {
        route
    } else {
        Route::WrongMethod(static_path(route), allowed)
    }
}

fn static_path(route: Route) -> &'static str {
    match route {
        Route::Poll => "/poll",
        Route::Push => "/push",
        Route::Clients => "/clients",
        Route::Metrics => "/metrics",
        Route::Index => "/",
        Route::Healthy => "/-/healthy",
        _ => "other",
    }
}

/// Largest body a request other than a push may declare; nothing of ours takes more than
/// 1 KiB, and a larger one is not drained (see [`handlers::refuse_undrained`]).
const MAX_OTHER_BODY: usize = 1 << 20;

/// Pushes declaring more than --push.max-body, but at most this, are refused after their Id
/// is read (so their scrape gets a 502) and drained; larger ones are not drained.
const PUSH_DRAIN_CEILING: usize = 256 << 20;

/// Binds the listener and serves until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), String> {
    let ssl = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::load(cert, key)?),
        _ => None,
    };
    let scheme = if ssl.is_some() { "https" } else { "http" };
    let auth = Auth::load(&config)?;
    let addr = config.listen_addr();
    let listener = crate::listener::bind(&addr, config.read_timeout).map_err(|e| {
        format!("cannot listen on {addr}: {e} (is another proxy running there? choose another address with -l)")
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the address of the listener: {e}"))?;
    // A second handle, to restart tiny_http's accept thread should it stop (see listener.rs).
    let spare = listener
        .try_clone()
        .map_err(|e| format!("cannot duplicate the listening socket: {e}"))?;
    let ssl_again = ssl.clone();
    let server = Server::from_listener(listener, ssl).map_err(|e| {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => format!(
                "the TLS certificate {} or key {} was refused: {e} (do they belong together?)",
                cert.display(),
                key.display()
            ),
            _ => format!("cannot serve on {addr}: {e}"),
        }
    })?;
    log::info!(
        "listening address={} scheme={scheme} scrape.default-timeout={} scrape.max-timeout={} registration.timeout={} web.read-timeout={} push.max-body={}",
        server.server_addr(),
        pushprox_protocol::format_duration(config.scrape_default_timeout),
        pushprox_protocol::format_duration(config.scrape_max_timeout),
        pushprox_protocol::format_duration(config.registration_timeout),
        pushprox_protocol::format_duration(config.read_timeout),
        config.push_max_body,
    );
    match &auth.clients {
        Some(t) => log::info!("clients must authenticate: {} FQDN pattern(s) in --auth.client-tokens", t.len()),
        None => log::info!("clients are not authenticated: any client may poll for any FQDN (set --auth.client-tokens)"),
    }
    match &auth.scrapers {
        Some(u) => log::info!(
            "scrapers must authenticate: {} user(s) in --auth.scrape-users; API {}",
            u.len(),
            if auth.protect_api {
                "protected"
            } else {
                "open"
            }
        ),
        None => log::info!("scrapers are not authenticated (set --auth.scrape-users)"),
    }
    let max_connections = match crate::limits::raise_open_files() {
        Some(open_files) => {
            let fit = crate::limits::connections_for(open_files);
            if fit < u64::from(config.max_connections) {
                log::warn!(
                    "the open-files limit ({open_files}) holds only {fit} connections, fewer than --web.max-connections={}: polls beyond {fit} get 503; raise the limit (ulimit -n, systemd LimitNOFILE=) to hold more clients",
                    config.max_connections
                );
            }
            fit.min(u64::from(config.max_connections)) as usize
        }
        None => config.max_connections as usize,
    };
    let state = Arc::new(State {
        auth,
        rendezvous: Rendezvous::new(),
        registry: Registry::new(config.registration_timeout),
        metrics: Metrics::default(),
        started: Instant::now(),
        in_flight: AtomicUsize::new(0),
        max_connections,
        workers: Workers::new("handler", HANDLER_STACK, WORKER_IDLE),
        config,
    });
    spawn_janitor(state.clone())?;
    crate::listener::keep_accepting(bound, state.config.read_timeout)
        .map_err(|e| format!("cannot start the accept-keeper thread: {e}"))?;
    let mut server = server;
    // Servers whose accept thread stopped; their open connections may still send requests.
    let mut retired: Vec<Server> = Vec::new();
    // Takes the next request (or waits up to `wait`), restarting tiny_http's accept thread
    // should it have stopped.
    let serve_next = |server: &mut Server, retired: &mut Vec<Server>, wait: Duration| {
        for old in retired.iter() {
            while let Ok(Some(request)) = old.try_recv() {
                dispatch(&state, request);
            }
        }
        match server.recv_timeout(wait) {
            Ok(Some(request)) => dispatch(&state, request),
            Ok(None) => {}
            Err(e) => {
                log::warn!("accepting connections failed: {e}; restarting the accept loop");
                let restarted = spare.try_clone().map_err(|e| e.to_string()).and_then(|l| {
                    Server::from_listener(l, ssl_again.clone()).map_err(|e| e.to_string())
                });
                match restarted {
                    Ok(new) => retired.push(std::mem::replace(server, new)),
                    Err(e) => log::error!("cannot restart the accept loop: {e}"),
                }
                // Out of file descriptors, accept fails again at once: wait for some to be
                // freed rather than spin (connections already open are still served).
                thread::sleep(Duration::from_millis(500));
            }
        }
    };
    while !pushprox_daemon::signals::requested() {
        serve_next(&mut server, &mut retired, Duration::from_millis(200));
    }
    log::info!(
        "stopping: no new requests (polls and new scrapes get 503); waiting up to {}s for the pushes of in-flight scrapes",
        SHUTDOWN_GRACE.as_secs()
    );
    for poll in state.rendezvous.shut_down() {
        poll.answer(503, "the proxy is shutting down; poll again shortly");
    }
    // Requests are still read, so that the pushes of scrapes in flight arrive; polls and new
    // scrapes are refused by the rendezvous from now on.
    let until = Instant::now() + SHUTDOWN_GRACE;
    while state.rendezvous.scrapes_waiting() > 0 && Instant::now() < until {
        serve_next(&mut server, &mut retired, Duration::from_millis(20));
    }
    drop(server);
    drop(retired);
    drop(spare);
    // Relays still streaming a body run on their own threads; give them a moment.
    let until = Instant::now() + Duration::from_secs(2);
    while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    log::info!("stopped");
    Ok(())
}

fn dispatch(state: &Arc<State>, request: Request) {
    let route = route(request.method(), request.url());
    let limit = match (route, state.config.push_max_body) {
        (Route::Push, 0) => usize::MAX,
        (Route::Push, max) => usize::try_from(max)
            .unwrap_or(usize::MAX)
            .max(PUSH_DRAIN_CEILING),
        _ => MAX_OTHER_BODY,
    };
    if let Some(declared) = request.body_length().filter(|n| *n > limit) {
        log::warn!(
            "refused {} {} from={}: declared body of {declared} bytes is over the limit of {limit}; connection abandoned undrained",
            request.method(),
            request.url().chars().take(100).collect::<String>(),
            handlers::poll::peer(&request)
        );
        let path = match route {
            Route::Push => "/push",
            Route::Poll => "/poll",
            _ => "other",
        };
        state.metrics.http_request(path, 413, Duration::ZERO);
        let reason = format!("request body of {declared} bytes is too large (limit {limit}; for pushes see --push.max-body)");
        handlers::refuse_undrained(request, 413, &reason);
        return;
    }
    let state2 = state.clone();
    // Parked polls count too: each keeps one of tiny_http's connection threads.
    let busy = state.in_flight.fetch_add(1, Ordering::SeqCst) + state.rendezvous.polls_waiting()
        >= state.max_connections;
    if busy {
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        state.metrics.rejected_busy();
        log::warn!(
            "at the connection limit ({}, from --web.max-connections and the open-files limit): refusing {} with 503",
            state.max_connections,
            request.url()
        );
        handlers::text(
            request,
            503,
            "the proxy is at its connection limit (--web.max-connections); retry shortly",
        );
        return;
    }
    let task = Box::new(move || {
        serve(&state2, route, request);
        state2.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
    if let Err(e) = state.workers.run(task) {
        // The request was dropped with the task; tiny_http answers it 500.
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        log::error!("cannot start a handler thread: {e} (thread or memory limit reached)");
    }
}

fn serve(state: &Arc<State>, route: Route, request: Request) {
    let started = Instant::now();
    let api_guard = match route {
        Route::Clients => Some("/clients"),
        Route::Metrics => Some("/metrics"),
        Route::Index => Some("/"),
        _ => None,
    };
    if let Some(path) = api_guard {
        let checked = state
            .auth
            .api(handlers::header_value(&request, "Authorization"));
        if let Err(refusal) = checked {
            let code = handlers::refuse(state, request, Guard::Api, &refusal);
            state.metrics.http_request(path, code, started.elapsed());
            return;
        }
    }
    let (path, code) = match route {
        Route::Scrape => {
            let checked = state
                .auth
                .scraper(handlers::header_value(&request, "Proxy-Authorization"));
            match checked {
                Ok(()) => handlers::scrape::handle(state, request),
                Err(refusal) => handlers::refuse(state, request, Guard::Scraper, &refusal),
            };
            return;
        }
        Route::Push => {
            // Recorded when the push is answered, which may be after its body was relayed.
            handlers::push::handle(state, request);
            return;
        }
        Route::Poll => match handlers::poll::handle(state, request) {
            Some(code) => ("/poll", code),
            // Parked or handed over: recorded when it is answered.
            None => return,
        },
        Route::Clients => ("/clients", handlers::clients::handle(state, request)),
        Route::Metrics => ("/metrics", handlers::metrics::handle(state, request)),
        Route::Index => ("/", handlers::index::handle(state, request)),
        // 503 while stopping, so that a load balancer stops sending clients here.
        Route::Healthy if pushprox_daemon::signals::requested() => {
            ("/-/healthy", handlers::text(request, 503, "stopping"))
        }
        Route::Healthy => ("/-/healthy", handlers::text(request, 200, "OK")),
        Route::WrongMethod(path, allowed) => {
            let reason = format!(
                "{} is not allowed on {path}: use {allowed}",
                request.method()
            );
            log::debug!("refused request: {reason}");
            (path, handlers::text(request, 405, &reason))
        }
        Route::Tunnel => {
            let reason = "CONNECT tunnels are not supported: scrape http:// targets through proxy_url, and add params: {_scheme: [https]} for TLS targets";
            ("other", handlers::text(request, 405, reason))
        }
        Route::NotFound => {
            let reason = format!(
                "no such endpoint {}: this proxy serves POST /poll, POST /push, GET /clients, GET /metrics, GET / and scrapes in absolute form (http://host:port/path)",
                request.url().chars().take(100).collect::<String>()
            );
            log::debug!("{reason}");
            ("other", handlers::text(request, 404, &reason))
        }
    };
    state.metrics.http_request(path, code, started.elapsed());
}

/// Answers polls held past --poll.max-hold, forgets clients past the registration timeout,
/// and drops idle per-FQDN entries.
fn spawn_janitor(state: Arc<State>) -> Result<(), String> {
    let every = (state.config.registration_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(10));
    let hold = state.config.poll_max_hold;
    // Polls are checked often enough that none is held much past the limit.
    // Polls may ask for their own hold (X-PushProx-Hold), so they are checked often.
    let tick = if hold.is_zero() {
        Duration::from_millis(250)
    } else {
        (hold / 10).clamp(Duration::from_millis(20), Duration::from_millis(250))
    }
    .min(every);
    thread::Builder::new()
        .name("janitor".into())
        .stack_size(HANDLER_STACK)
        .spawn(move || {
            let mut last_sweep = Instant::now();
            loop {
                thread::sleep(tick);
                for (fqdn, poll) in state.rendezvous.expire_parked(hold) {
                    let reason = format!("no scrape for {fqdn} within the poll's hold; poll again");
                    poll.answer(408, &reason);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::Get, "http://h:9100/metrics"), Route::Scrape);
        assert_eq!(route(&Method::Get, "HTTPS://h/"), Route::Scrape);
        assert_eq!(route(&Method::Post, "/poll"), Route::Poll);
        assert_eq!(
            route(&Method::Get, "/poll"),
            Route::WrongMethod("/poll", "POST")
        );
        assert_eq!(route(&Method::Get, "/clients?x=1"), Route::Clients);
        assert_eq!(
            route(&Method::Post, "/clients"),
            Route::WrongMethod("/clients", "GET")
        );
        assert_eq!(route(&Method::Connect, "h:443"), Route::Tunnel);
        assert_eq!(route(&Method::Get, "/nope"), Route::NotFound);
    }
}
