//! Start-up and shut-down: agents, metrics server, one poller per proxy; then wait for
//! SIGTERM or SIGINT and let the scrapes in flight finish.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pushprox_daemon::signals;
use pushprox_daemon::workers::Workers;
use pushprox_protocol::POLLER_HEADER;

use crate::agent;
use crate::config::{Config, THREAD_STACK};
use crate::error::StartupError;
use crate::in_flight::InFlight;
use crate::link::ProxyLink;
use crate::metrics::Metrics;
use crate::metrics_server;
use crate::poller::{Backoff, ProxyPolls};
use crate::scrape::{ScrapeContext, TargetAgents};
use crate::token::BearerToken;

/// How long a scrape thread waits for the next scrape before it ends.
const SCRAPE_THREAD_IDLE: Duration = Duration::from_secs(10);

/// Starts the client: agents, metrics server, one poller per proxy.
pub fn run(config: &Config) -> Result<Arc<InFlight>, StartupError> {
    let flags = &config.flags;
    let token = match &flags.token_file {
        Some(path) => Some((path.clone(), BearerToken::read(path)?)),
        None => None,
    };
    let tls = crate::tls::tls_configs(config)?;
    let listener = metrics_server::bind(&flags.metrics_addr)?;
    let allow: Vec<String> = flags.scrape_allow.iter().map(|r| r.to_string()).collect();
    log::info!(
        "starting pushprox-client version={} fqdn={} proxy_urls={} max_polls={} metrics_addr={} token_file={} scrape_allow={}",
        env!("CARGO_PKG_VERSION"),
        config.fqdn,
        flags.proxy_urls.join(","),
        flags.max_polls,
        flags.metrics_addr.text,
        flags.token_file
            .as_deref()
            .map_or_else(|| "none".into(), |p| p.display().to_string()),
        if allow.is_empty() {
            "any".to_string()
        } else {
            allow.join(",")
        }
    );
    log::info!("{}", serving_line(config));
    let metrics = Arc::new(Metrics::default());
    metrics_server::serve(listener, Arc::clone(&metrics))?;

    let connect_host = flags.scrape_target_host.clone();
    let http_agent =
        agent::target_agent(tls.target.clone().unwrap_or_default(), connect_host.clone());
    let https = std::sync::OnceLock::new();
    if tls.target.is_some() {
        let _ = https.set(http_agent.clone());
    }
    let agents = TargetAgents {
        http: http_agent,
        https,
        make_https: Box::new(move || {
            agent::target_agent(crate::tls::target_default(), connect_host.clone())
        }),
    };
    let ctx = Arc::new(ScrapeContext {
        fqdn: config.fqdn.clone(),
        allow: flags.scrape_allow.clone(),
        allow_from_sd_targets: config.allow_from_sd_targets,
        agents,
        metrics,
        threads: Workers::new("scrape", THREAD_STACK, SCRAPE_THREAD_IDLE),
    });
    let in_flight = InFlight::new(usize::from(flags.max_in_flight));
    let instance = pushprox_daemon::ids::instance_id();
    log::debug!("poller instance id {instance}, sent as {POLLER_HEADER} on every poll");
    let announce = crate::link::announcements(&flags.labels, &flags.sd_targets);
    for (name, value) in &announce {
        log::info!("announcing on every poll {name}: {value}");
    }
    for url in &flags.proxy_urls {
        let agent = agent::proxy_agent(tls.proxy.clone().unwrap_or_default(), url);
        agent::log_forward_proxy(&agent, url);
        if token.is_some() && url.starts_with("http://") && !agent::is_loopback(url) {
            log::warn!(
                "sending the --auth.token-file token to {url} over plain http, where anyone on the way can read it; use an https:// proxy URL"
            );
        }
        let link = Arc::new(ProxyLink {
            url: url.clone(),
            agent,
            fqdn: config.fqdn.clone(),
            token: token.clone(),
            announce: announce.clone(),
        });
        let polls = ProxyPolls::new(
            link,
            Arc::clone(&ctx),
            Arc::clone(&in_flight),
            instance.clone(),
            usize::from(flags.max_polls),
        );
        polls
            .spawn_primary(Backoff::new(flags.retry_initial_wait, flags.retry_max_wait))
            .map_err(|e| StartupError::Thread {
                what: "poll",
                source: e,
            })?;
    }
    Ok(in_flight)
}

/// The start line that says what a Prometheus target for this client looks like; what `--fqdn`
/// must be is the commonest confusion about PushProx.
fn serving_line(config: &Config) -> String {
    let proxies: Vec<String> = config
        .flags
        .proxy_urls
        .iter()
        .map(|u| format!("{u}/"))
        .collect();
    let mut line = format!(
        "serving fqdn={fqdn}: Prometheus targets must be written {fqdn}:PORT, with proxy_url {}",
        proxies.join(" or "),
        fqdn = config.fqdn
    );
    if let Some(host) = &config.flags.scrape_target_host {
        line.push_str(&format!(
            "; scrapes connect to {host} (--scrape.target-host)"
        ));
    }
    line
}

/// Polls are long and need not be waited for; scrapes in flight get until their deadlines.
pub fn wait_for_signal(in_flight: &InFlight) -> ExitCode {
    while !signals::requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = in_flight.count();
    if n > 0 {
        log::info!("stopping: waiting for {n} scrape(s) in flight");
    }
    let left = in_flight.wait_idle();
    if left > 0 {
        log::warn!("stopping with {left} scrape(s) still running past their deadlines");
    }
    log::info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_says_how_a_target_is_written() {
        use clap::Parser;
        let flags = crate::config::Flags::try_parse_from([
            "pushprox-client",
            "--proxy-url=http://proxy.example:8080/",
            "--proxy-url=https://b",
            "--fqdn=Host.Example",
            "--scrape.target-host=127.0.0.1",
        ])
        .unwrap();
        assert_eq!(
            serving_line(&flags.into_config()),
            "serving fqdn=host.example: Prometheus targets must be written host.example:PORT, \
             with proxy_url http://proxy.example:8080/ or https://b/; scrapes connect to \
             127.0.0.1 (--scrape.target-host)"
        );
    }
}
