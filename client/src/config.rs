//! The command line: every flag once, with its default and its Go name beside it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pushprox_daemon::flags::{duration, DaemonFlags};
pub use pushprox_daemon::listen::ListenAddr;
pub use pushprox_protocol::Label;
use pushprox_protocol::LabelNameError;

/// Stack of every thread the client starts. A poll or scrape with a TLS handshake (RSA client
/// certificate) needs under 64 KiB optimized but over 128 KiB unoptimized, whose frames are
/// several times larger: debug builds (the tests) get more room.
pub const THREAD_STACK: usize = if cfg!(debug_assertions) {
    512 * 1024
} else {
    128 * 1024
};

/// The flags as given. Go's flag names are the primary names, so unit files written for the Go
/// client work unchanged.
#[derive(Debug, Parser)]
#[command(
    name = "pushprox-client",
    version,
    about = "PushProx client: keeps a poll open to the proxy and performs the scrapes it hands \
             out against targets on this host.",
    after_help = "Example: pushprox-client --proxy-url http://proxy.example:8080/"
)]
pub struct Flags {
    /// Proxy to poll, as http(s)://host:port/ (a trailing / or none both work). Required; give
    /// it several times to keep a poll open to each proxy (high availability).
    /// [Go: same, given once]
    #[arg(long = "proxy-url", value_name = "URL", required = true, value_parser = proxy_url)]
    pub proxy_urls: Vec<String>,

    /// The name this client serves scrapes for; it must equal the host of the Prometheus
    /// target. Default: this host's fully qualified name, as `hostname -f` gives it. [Go: same]
    #[arg(long = "fqdn", value_name = "NAME", value_parser = fqdn)]
    pub fqdn: Option<String>,

    /// PEM file of the CA certificates to trust for the proxy and for https scrapes, instead of
    /// the system's (SSL_CERT_FILE, SSL_CERT_DIR, else /etc/ssl/certs/ca-certificates.crt and
    /// the other usual bundles, as Go finds them). Default: none. [Go: same]
    #[arg(long = "tls.cacert", value_name = "FILE")]
    pub tls_cacert: Option<PathBuf>,

    /// PEM file of the client certificate (chain) for mutual TLS, with --tls.key. Default:
    /// none. [Go: same]
    #[arg(long = "tls.cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of --tls.cert. Default: none. [Go: same]
    #[arg(long = "tls.key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Address to serve /metrics and /-/healthy on: host:port, or :port for all interfaces.
    /// [Go: same]
    #[arg(long = "metrics-addr", value_name = "ADDR", default_value = ":9369", value_parser = ListenAddr::parse)]
    pub metrics_addr: ListenAddr,

    /// First wait before polling again after a failed poll; each further failure waits 1.5
    /// times longer. [Go: same]
    #[arg(long = "proxy.retry.initial-wait", value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub retry_initial_wait: Duration,

    /// Longest wait between failed polls. [Go: same]
    #[arg(long = "proxy.retry.max-wait", value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub retry_max_wait: Duration,

    /// Most polls kept open to one proxy at a time (1 to 64). One poll carries one scrape at a
    /// time, so while scrapes keep every poll busy the client opens more, up to this and to
    /// what the proxy offers; each extra poll ends after 5 s without a scrape. Only our proxy
    /// offers more than one: against the Go proxy one poll is used, whatever this says. 1
    /// disables the extra polls. [Go: none]
    #[arg(long = "proxy.max-polls", value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_polls: u16,

    /// File holding the bearer token this client sends to the proxy as `Authorization: Bearer
    /// TOKEN` on every /poll and /push (surrounding white space is ignored). Needed when the
    /// proxy runs with --auth.client-tokens; the token is never taken from the command line,
    /// where `ps` would show it. Default: none (no Authorization header). [Go: none]
    #[arg(long = "auth.token-file", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Ports, or HOST:PORT pairs, this client will scrape: give it several times or
    /// comma-separated (`9100,9256`, `node1.example:9100`). A HOST:PORT entry only counts when
    /// the scrape is for that host, so one list can be shared by many clients. Any other scrape
    /// gets a 403 that names this flag. Default: empty, any port of this host's FQDN, as in Go.
    /// [Go: none]
    #[arg(long = "scrape.allow", value_name = "PORT_OR_HOSTPORT", value_delimiter = ',', value_parser = allow_rule)]
    pub scrape_allow: Vec<AllowRule>,

    /// Host to connect to for every scrape instead of the scrape URL's host, on the URL's port
    /// (e.g. 127.0.0.1, for exporters that listen on loopback only, or an --fqdn this host
    /// cannot resolve). The Host header and the TLS name checked stay the URL's, so targets
    /// with certificates for the FQDN, and virtual hosts, keep working. Scrapes are still
    /// accepted only for --fqdn. Default: the scrape URL's host, as in Go.
    /// [Go: none; the Rancher fork's --use-localhost]
    #[arg(long = "scrape.target-host", value_name = "HOST", value_parser = target_host)]
    pub scrape_target_host: Option<String>,

    /// PEM file of the CA certificates to trust for https scrapes (`_scheme=https`) only; the
    /// proxy stays checked with --tls.cacert. Default: the CAs of --tls.cacert, else the
    /// system's, for targets as for the proxy (as in Go). [Go: none]
    #[arg(
        long = "scrape.tls.cacert",
        value_name = "FILE",
        conflicts_with = "scrape_insecure"
    )]
    pub scrape_tls_cacert: Option<PathBuf>,

    /// Do not check the certificates of https scrapes (`_scheme=https`), for targets with
    /// self-signed certificates; the proxy's certificate is always checked. Logged as a warning
    /// at start. Default: off. [Go: none]
    #[arg(long = "scrape.tls.insecure-skip-verify")]
    pub scrape_insecure: bool,

    /// A label for this client in the proxy's /clients (service discovery), as NAME=VALUE; give
    /// it several times (a name given twice: the last value wins). NAME is a Prometheus label
    /// name, [a-zA-Z_][a-zA-Z0-9_]* not starting with __; VALUE is any UTF-8. Sent with every
    /// poll (X-PushProx-Labels), which a Go proxy ignores. Default: none. [Go: none]
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = label)]
    pub labels: Vec<Label>,

    /// A port of this host to announce as a target in the proxy's /clients, with labels of its
    /// own: PORT or PORT:NAME=VALUE,NAME=VALUE (e.g. 9100:job=node; values without commas);
    /// give it several times. Without --scrape.allow the announced ports are the only ones this
    /// client scrapes. Sent with every poll (X-PushProx-Targets), which a Go proxy ignores.
    /// Default: none (the proxy lists this client by its FQDN alone). [Go: none]
    #[arg(long = "sd.target", value_name = "PORT[:NAME=VALUE,...]", value_parser = sd_target)]
    pub sd_targets: Vec<SdTarget>,

    // What a proxy can make this client spend: a proxy is trusted with scrapes, not with the
    // host's threads and memory.
    /// Most scrapes running at once, from all proxies together. A scrape beyond it is not
    /// started: it is answered at once with a 503 push saying so, and counted as refused. Each
    /// running scrape holds a thread and a connection to its target. [Go: none]
    #[arg(long = "scrape.max-in-flight", value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub max_in_flight: u16,

    #[command(flatten)]
    pub daemon: DaemonFlags,
}

/// One `--scrape.allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// Any host (that is, this client's FQDN) on this port.
    Port(u16),
    /// This host (lower case, no brackets, no trailing dot) on this port.
    HostPort(String, u16),
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowRule::Port(port) => write!(f, "{port}"),
            AllowRule::HostPort(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            AllowRule::HostPort(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// A target announced with `--sd.target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdTarget {
    pub port: u16,
    /// Its own labels, by name.
    pub labels: Vec<Label>,
}

/// Everything `run` needs: the flags, completed.
#[derive(Debug)]
pub struct Config {
    /// As given, but `proxy_urls` each once, `labels` by name with each name once,
    /// `retry_max_wait` at least `retry_initial_wait`, and `scrape_allow` the `--sd.target`
    /// ports when `--scrape.allow` is not given ([`Config::allow_from_sd_targets`]); an empty
    /// `scrape_allow`: any port.
    pub flags: Flags,
    /// `--fqdn`, else this host's.
    pub fqdn: String,
    /// Whether `flags.scrape_allow` is the `--sd.target` ports.
    pub allow_from_sd_targets: bool,
}

impl Flags {
    /// The configuration, with the default FQDN looked up when `--fqdn` is absent.
    pub fn into_config(mut self) -> Config {
        let fqdn = self.fqdn.take().unwrap_or_else(crate::fqdn::default_fqdn);
        // The same proxy twice would only make two polls supersede each other.
        let mut seen = std::collections::HashSet::new();
        self.proxy_urls.retain(|url| seen.insert(url.clone()));
        self.retry_max_wait = self.retry_max_wait.max(self.retry_initial_wait);
        self.labels = by_name(std::mem::take(&mut self.labels));
        let allow_from_sd_targets = self.scrape_allow.is_empty() && !self.sd_targets.is_empty();
        if allow_from_sd_targets {
            let ports = self.sd_targets.iter().map(|t| AllowRule::Port(t.port));
            self.scrape_allow = ports.collect();
        }
        Config {
            flags: self,
            fqdn,
            allow_from_sd_targets,
        }
    }
}

/// `--proxy-url`: an http(s) URL, kept without its trailing `/` so `{url}/poll` is right.
fn proxy_url(text: &str) -> Result<String, String> {
    let t = text.trim();
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .ok_or_else(|| {
            format!(
                "\"{text}\" is not an http:// or https:// URL, such as http://proxy.example:8080/"
            )
        })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || t.contains(['?', '#', ' ']) {
        return Err(format!(
            "\"{text}\" is not a proxy URL such as http://proxy.example:8080/ (a host is needed; no query)"
        ));
    }
    Ok(t.trim_end_matches('/').to_string())
}

/// `--fqdn`: a host name without port or scheme.
fn fqdn(text: &str) -> Result<String, String> {
    let t = text.trim();
    if !pushprox_protocol::is_fqdn(t) {
        return Err(format!(
            "\"{text}\" is not a host name; give the name Prometheus uses as the target host, such as node1.example.com"
        ));
    }
    Ok(t.trim_end_matches('.').to_ascii_lowercase())
}

/// `labels` sorted by name, each name once: the last value given wins.
fn by_name(labels: Vec<Label>) -> Vec<Label> {
    let map: std::collections::BTreeMap<String, String> = labels.into_iter().collect();
    map.into_iter().collect()
}

/// A Prometheus label name, not one of the reserved `__` names.
fn label_name(name: &str) -> Result<(), String> {
    pushprox_protocol::check_label_name(name).map_err(|e| match e {
        LabelNameError::Reserved => format!(
            "label name \"{name}\" starts with \"__\", which Prometheus reserves for its own \
             labels; a label name matches [a-zA-Z_][a-zA-Z0-9_]* and does not start with \"__\""
        ),
        LabelNameError::Invalid => format!(
            "\"{name}\" is not a Prometheus label name: a label name matches \
             [a-zA-Z_][a-zA-Z0-9_]* (letters, digits and _, not starting with a digit)"
        ),
    })
}

/// `--label`: `NAME=VALUE`.
fn label(text: &str) -> Result<Label, String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("\"{text}\" is not NAME=VALUE, such as env=prod"))?;
    label_name(name)?;
    Ok((name.to_string(), value.to_string()))
}

/// `--sd.target`: `PORT` or `PORT:NAME=VALUE,NAME=VALUE`.
fn sd_target(text: &str) -> Result<SdTarget, String> {
    let (port, labels) = match text.split_once(':') {
        Some((port, labels)) => (port, Some(labels)),
        None => (text, None),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| {
            format!("\"{text}\" is not PORT or PORT:NAME=VALUE,..., such as 9100 or 9100:job=node")
        })?;
    let labels = match labels {
        None => Vec::new(),
        Some(list) => list.split(',').map(label).collect::<Result<Vec<_>, _>>()?,
    };
    Ok(SdTarget {
        port,
        labels: by_name(labels),
    })
}

/// `--scrape.target-host`: a host name or address (`127.0.0.1`, `::1`, `[::1]`), no port.
fn target_host(text: &str) -> Result<String, String> {
    let t = text.trim();
    let bare = t
        .strip_prefix('[')
        .and_then(|v6| v6.strip_suffix(']'))
        .unwrap_or(t);
    let bad = || {
        format!("\"{text}\" is not a host name or address without a port, such as 127.0.0.1 or ::1")
    };
    if bare.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(bad());
    }
    fqdn(bare).map_err(|_| bad())
}

/// `--scrape.allow`: `9100`, `host:9100`, `[::1]:9100`.
fn allow_rule(text: &str) -> Result<AllowRule, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "\"{text}\" is not a port or host:port, such as 9100 or node1.example:9100 (several: 9100,9256)"
        )
    };
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return port(t).map(AllowRule::Port);
    }
    let (host, p) = if let Some(v6) = t.strip_prefix('[') {
        v6.split_once("]:").ok_or_else(bad)?
    } else {
        t.rsplit_once(':').ok_or_else(bad)?
    };
    let host = fqdn(host).map_err(|_| bad())?;
    if host.contains(':') && !t.starts_with('[') {
        return Err(bad());
    }
    Ok(AllowRule::HostPort(host, port(p)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(std::iter::once("pushprox-client").chain(args.iter().copied()))
    }

    #[test]
    fn go_flags_and_defaults() {
        let f = parse(&["--proxy-url", "http://proxy:8080/", "--fqdn=Node1.Example."]).unwrap();
        assert_eq!(f.proxy_urls, ["http://proxy:8080"]);
        assert_eq!(f.fqdn.as_deref(), Some("node1.example"));
        assert_eq!(f.retry_initial_wait, Duration::from_secs(1));
        assert_eq!(f.retry_max_wait, Duration::from_secs(5));
        assert_eq!(f.metrics_addr.host, None);
        assert_eq!(f.metrics_addr.port, 9369);
        assert_eq!(f.daemon.log_level, pushprox_daemon::flags::LogLevel::Info);
        assert_eq!(f.max_polls, 4);
        assert_eq!(f.max_in_flight, 32);
    }

    #[test]
    fn a_go_v0_2_0_command_line_parses_whole() {
        // Every flag of the Go client v0.2.0's --help, in its `--name=value` form.
        let f = parse(&[
            "--fqdn=host.example",
            "--proxy-url=http://proxy:8080/",
            "--tls.cacert=ca.pem",
            "--tls.cert=client.pem",
            "--tls.key=client.key",
            "--metrics-addr=:9370",
            "--proxy.retry.initial-wait=2s",
            "--proxy.retry.max-wait=10s",
            "--log.level=warn",
            "--log.format=json",
        ])
        .unwrap();
        assert_eq!(f.metrics_addr.port, 9370);
        assert_eq!(f.retry_max_wait, Duration::from_secs(10));
        assert_eq!(f.daemon.log_level.filter(), log::LevelFilter::Warn);
        assert_eq!(f.daemon.log_format, pushprox_daemon::logger::Format::Json);
    }

    #[test]
    fn scrape_target_host_is_a_host_without_port() {
        for (given, kept) in [
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("Node1.Example", "node1.example"),
        ] {
            let f = parse(&["--proxy-url=http://a", "--scrape.target-host", given]).unwrap();
            assert_eq!(
                f.into_config().flags.scrape_target_host.as_deref(),
                Some(kept),
                "{given}"
            );
        }
        for bad in ["127.0.0.1:9100", "http://h", "", "a b", "[::1]:80"] {
            let err = parse(&["--proxy-url=http://a", "--scrape.target-host", bad]).unwrap_err();
            assert!(
                err.to_string().contains("--scrape.target-host"),
                "{bad}: {err}"
            );
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn scrape_tls_cacert_and_insecure_skip_verify_exclude_each_other() {
        let f = parse(&["--proxy-url=http://a", "--scrape.tls.insecure-skip-verify"]).unwrap();
        assert!(f.into_config().flags.scrape_insecure);
        let err = parse(&[
            "--proxy-url=http://a",
            "--scrape.tls.insecure-skip-verify",
            "--scrape.tls.cacert=ca.pem",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--scrape.tls.cacert"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn labels_are_prometheus_label_names_with_any_utf8_values() {
        let f = parse(&[
            "--proxy-url=http://a",
            "--label",
            "site=Zürich 🦀",
            "--label=env=prod",
            "--label",
            "_x9=a=b",
            "--label=env=staging",
            "--label=empty=",
        ])
        .unwrap();
        let config = f.into_config();
        let labels: Vec<(&str, &str)> = config
            .flags
            .labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("_x9", "a=b"),
                ("empty", ""),
                ("env", "staging"),
                ("site", "Zürich 🦀")
            ]
        );
        assert_eq!(
            label("__name__=x").unwrap_err(),
            "label name \"__name__\" starts with \"__\", which Prometheus reserves for its own \
             labels; a label name matches [a-zA-Z_][a-zA-Z0-9_]* and does not start with \"__\""
        );
        assert_eq!(
            label("9lives=x").unwrap_err(),
            "\"9lives\" is not a Prometheus label name: a label name matches \
             [a-zA-Z_][a-zA-Z0-9_]* (letters, digits and _, not starting with a digit)"
        );
        assert_eq!(
            label("env").unwrap_err(),
            "\"env\" is not NAME=VALUE, such as env=prod"
        );
        for bad in ["__x=1", "a-b=1", "=1", "env", "ünï=1"] {
            let err = parse(&["--proxy-url=http://a", "--label", bad]).unwrap_err();
            assert!(
                err.to_string().contains("--label <NAME=VALUE>"),
                "{bad}: {err}"
            );
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn sd_targets_are_ports_with_labels_and_the_implicit_allow_list() {
        let f = parse(&[
            "--proxy-url=http://a",
            "--sd.target",
            "9100:job=node,env=x",
            "--sd.target=9256",
        ])
        .unwrap();
        let config = f.into_config();
        assert_eq!(
            config.flags.sd_targets,
            [
                SdTarget {
                    port: 9100,
                    labels: vec![("env".into(), "x".into()), ("job".into(), "node".into())]
                },
                SdTarget {
                    port: 9256,
                    labels: Vec::new()
                },
            ]
        );
        assert_eq!(
            config.flags.scrape_allow,
            [AllowRule::Port(9100), AllowRule::Port(9256)]
        );
        assert!(config.allow_from_sd_targets);
        // --scrape.allow, when given, is the list.
        let config = parse(&[
            "--proxy-url=http://a",
            "--sd.target=9100",
            "--scrape.allow=9999",
        ])
        .unwrap()
        .into_config();
        assert_eq!(config.flags.scrape_allow, [AllowRule::Port(9999)]);
        assert!(!config.allow_from_sd_targets);
        assert_eq!(
            sd_target("node:job=x").unwrap_err(),
            "\"node:job=x\" is not PORT or PORT:NAME=VALUE,..., such as 9100 or 9100:job=node"
        );
        assert!(sd_target("9100:__job=x").unwrap_err().contains("reserves"));
        for bad in ["0", "70000", "9100:", "9100:job", "9100:a-b=c", "x"] {
            let err = parse(&["--proxy-url=http://a", "--sd.target", bad]).unwrap_err();
            assert!(err.to_string().contains("--sd.target"), "{bad}: {err}");
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn max_polls_is_1_to_64() {
        let f = parse(&["--proxy-url=http://a", "--proxy.max-polls", "1"]).unwrap();
        assert_eq!(f.into_config().flags.max_polls, 1);
        for bad in ["0", "65", "-1", "many"] {
            let flag = format!("--proxy.max-polls={bad}");
            let err = parse(&["--proxy-url=http://a", &flag]).unwrap_err();
            assert!(
                err.to_string().contains("--proxy.max-polls"),
                "{bad}: {err}"
            );
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn several_proxies() {
        let f = parse(&[
            "--proxy-url=http://a:8080",
            "--proxy-url",
            "https://b/",
            "--metrics-addr",
            "[::1]:1234",
            "--proxy.retry.max-wait",
            "1m30s",
        ])
        .unwrap();
        assert_eq!(f.proxy_urls, ["http://a:8080", "https://b"]);
        assert_eq!(f.metrics_addr.host.as_deref(), Some("::1"));
        assert_eq!(f.retry_max_wait, Duration::from_secs(90));
    }

    #[test]
    fn bad_values_name_the_flag_and_the_form() {
        let err = parse(&["--proxy-url=http://a", "--proxy.retry.max-wait", "5"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--proxy.retry.max-wait"), "{text}");
        assert!(text.contains("15s"), "{text}");
        assert_eq!(err.exit_code(), 2);
        assert!(parse(&["--proxy-url=proxy:8080"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--proxy-url=http://a", "--metrics-addr=9369"]).is_err());
        assert!(parse(&["--proxy-url=http://a", "--tls.cert=c.pem"]).is_err());
    }

    #[test]
    fn scrape_allow_takes_ports_and_host_ports_repeated_or_comma_separated() {
        let f = parse(&[
            "--proxy-url=http://a",
            "--scrape.allow",
            "9100,9256",
            "--scrape.allow=Node1.Example.:9100",
            "--scrape.allow",
            "[::1]:80",
        ])
        .unwrap();
        assert_eq!(
            f.scrape_allow,
            [
                AllowRule::Port(9100),
                AllowRule::Port(9256),
                AllowRule::HostPort("node1.example".into(), 9100),
                AllowRule::HostPort("::1".into(), 80),
            ]
        );
        let shown: Vec<String> = f.scrape_allow.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["9100", "9256", "node1.example:9100", "[::1]:80"]);
        assert!(parse(&["--proxy-url=http://a"])
            .unwrap()
            .scrape_allow
            .is_empty());
        for bad in [
            "0",
            "70000",
            "host",
            "host:",
            ":9100",
            "a b:1",
            "::1:80",
            "http://h:1",
        ] {
            let err = parse(&["--proxy-url=http://a", "--scrape.allow", bad]).unwrap_err();
            assert!(err.to_string().contains("--scrape.allow"), "{bad}: {err}");
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }
}
