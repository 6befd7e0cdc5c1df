//! Command-line flags: defined once, with their help, defaults and Go names side by side.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};
use pushprox_daemon::flags::{duration, DaemonFlags};
use pushprox_daemon::listen::ListenAddr;

/// Lets Prometheus scrape targets it cannot reach: clients behind NAT long-poll this proxy,
/// and Prometheus uses it as its `proxy_url`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "pushprox-proxy",
    version,
    about,
    after_help = "Example:\n  pushprox-proxy -l 0.0.0.0:8080\n\nThen point Prometheus at it with `proxy_url: http://proxy.example:8080/` and run\n`pushprox-client --proxy-url http://proxy.example:8080/` on each target host.\n\nExit codes: 0 stopped cleanly (or --lock-file held by another copy), 1 runtime failure\n(e.g. the address is in use), 2 bad flags."
)]
pub struct Config {
    /// Address to listen on for polls, pushes and scrapes; `:8080` means every interface.
    /// [Go: --web.listen-address]
    #[arg(
        short = 'l',
        long = "listen",
        visible_alias = "web.listen-address",
        value_name = "ADDR",
        default_value = ":8080",
        value_parser = ListenAddr::parse
    )]
    pub listen: ListenAddr,

    /// Longest deadline a scrape may ask for with X-Prometheus-Scrape-Timeout-Seconds; longer
    /// ones are cut to this. [Go: same]
    #[arg(long = "scrape.max-timeout", value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub scrape_max_timeout: Duration,

    /// Deadline of a scrape that does not send X-Prometheus-Scrape-Timeout-Seconds (curl, other
    /// tools). [Go: same]
    #[arg(long = "scrape.default-timeout", value_name = "DURATION", default_value = "15s", value_parser = duration)]
    pub scrape_default_timeout: Duration,

    /// Answer a scrape that cannot succeed (no poll, no push) this long before the scraper's
    /// deadline, at most a quarter of it, so that Prometheus shows the reason as the target's
    /// error instead of "context deadline exceeded"; clients get the same margin before the
    /// proxy's own deadline, to push their reason (target too slow) in time. 0s answers at the
    /// deadline, as Go does; the default is blackbox_exporter's --timeout-offset. [Go: none]
    #[arg(long = "scrape.timeout-offset", value_name = "DURATION", default_value = "500ms", value_parser = duration)]
    pub scrape_timeout_offset: Duration,

    /// A client is listed in /clients while it polled within this time, and forgotten after.
    /// [Go: same]
    #[arg(long = "registration.timeout", value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub registration_timeout: Duration,

    /// Longest time a poll is held open without a scrape before it is answered 408 and the
    /// client polls again. 0s holds polls indefinitely, as the Go proxy does: keep it for
    /// fleets of Go clients, which log an error and back off 1 s on every 408. Behind a load
    /// balancer or NAT with an idle time-out, set it a little below that time-out (e.g. 50s for
    /// a 60 s idle time-out), so the proxy ends the poll before the balancer cuts it.
    /// [Go: none]
    #[arg(long = "poll.max-hold", value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub poll_max_hold: Duration,

    /// How long a scrape for an FQDN that does not poll this proxy (not seen within
    /// --registration.timeout) waits for its first poll; then it is answered 404 with
    /// X-PushProx-Retry: next, which a balancer in front of shards retries on its next server
    /// (nginx proxy_next_upstream http_404): the shard that holds the client. Set it on shards
    /// (100ms: a client that moves polls again within milliseconds). 0s waits the scrape's
    /// whole deadline, as the Go proxy does: right for a single proxy. [Go: none]
    #[arg(long = "scrape.unknown-fqdn-wait", value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub scrape_unknown_fqdn_wait: Duration,

    /// On SIGTERM, how long the proxy waits for the scrapes in progress (their pushes and
    /// relays) before it exits. Meanwhile it keeps accepting: parked and new polls, and new scrapes, are answered
    /// 404 with X-PushProx-Retry: next (a balancer retries them on its next server; our client
    /// polls again at once), pushes are relayed. [Go: none]
    #[arg(long = "shutdown.timeout", value_name = "DURATION", default_value = "15s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// Most connections open at once, from accept to close; each parked poll holds one (and one
    /// file descriptor, no thread). Beyond it, new connections get 503 and the proxy carries
    /// on. Lowered at start to what the open-files limit holds. [Go: none]
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Largest request head (request line and headers); a longer one gets 431 (414 for a
    /// request line alone that long) and the connection is closed. [Go: none]
    #[arg(long = "web.max-header-bytes", value_name = "SIZE", default_value = "16KiB", value_parser = parse_head_size)]
    pub max_head_bytes: usize,

    /// Most header fields in a request; more get 431. [Go: none]
    #[arg(long = "web.max-headers", value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_headers: u16,

    /// Longest wait for the next request on an idle connection; once a request starts, the time
    /// its whole head may take (a head trickled a byte at a time is cut here), then the time
    /// its whole body may take (a push's: until its scrape's deadline); and the longest stall
    /// of each write and a TLS handshake. A parked poll is not a read: it is unaffected. 0s
    /// turns it off (as the Go proxy, which has none). [Go: none]
    #[arg(long = "web.read-timeout", value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub read_timeout: Duration,

    /// Load balancers (addresses or CIDR networks, comma-separated, e.g.
    /// `127.0.0.1,10.0.0.0/8`) whose `X-PushProx-Target` header is believed: a request from one
    /// of them carrying `X-PushProx-Target: http://host:port/path` is a scrape of that target,
    /// as nginx forwards proxy-form scrapes in origin form. From any other peer the header is
    /// dropped unread. Default: none. See "Scaling out" in the README. [Go: none]
    #[arg(
        long = "web.trusted-proxies",
        value_name = "CIDR,...",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<crate::trusted::TrustedNet>,

    /// Largest push body (the client's serialized scrape response). A larger push gets 413 and
    /// its scraper 502 with the reason. Units: B, KiB, MiB, GiB (or KB, MB, GB); 0 means no
    /// limit. Keep it below this host's memory. [Go: none]
    #[arg(long = "push.max-body", value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub push_max_body: u64,

    /// The exporter-toolkit web configuration (as node_exporter's --web.config.file; a file
    /// written for node_exporter works unchanged): tls_server_config (certificate, key,
    /// client_auth_type, client_ca_file, versions), basic_auth_users (bcrypt hashes, as
    /// `htpasswd -nBC 10 ""` makes them) and http_server_config.headers. With basic_auth_users,
    /// scrapes need Proxy-Authorization and /clients, /metrics and / need Authorization
    /// (/-/healthy stays open); with RequireAndVerifyClientCert a client may poll only for an
    /// FQDN its certificate names. Re-read every 5 s when it or a file it names changes; a
    /// broken new version is logged and the last good one kept. Replaces --tls.cert/--tls.key.
    /// [Go: exporter-toolkit's --web.config.file]
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Serve HTTPS: PEM file with the certificate chain (server certificate first). Needs
    /// --tls.key. Clients then use --proxy-url https://..., Prometheus proxy_url: https://... A
    /// shorthand for tls_server_config in --web.config.file (not both). Re-read, with
    /// --tls.key, when either changes (checked every 5 s). [Go: none]
    #[arg(long = "tls.cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls.cert (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE
    /// KEY", unencrypted). [Go: none]
    #[arg(long = "tls.key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require clients to authenticate: a file of `FQDN TOKEN` lines (`#` comments; FQDN may be
    /// `*.example.com` or `*`, the most specific match wins). /poll and /push then need
    /// `Authorization: Bearer TOKEN` valid for the FQDN polled for, or for the FQDN of the
    /// scrape answered: 401 without it, 403 with a wrong one. Unset: anyone may poll, as in Go.
    /// [Go: none]
    #[arg(long = "auth.client-tokens", value_name = "FILE")]
    pub client_tokens: Option<PathBuf>,

    /// Require scrapers to authenticate: a file of `user:BCRYPT_HASH` lines (`htpasswd -nBC 10
    /// USER`, or --hash-password, makes one; old `user:sha256:...` lines load with a warning).
    /// Scrapes then need `Proxy-Authorization: Basic` (Prometheus: proxy_url:
    /// http://user:password@proxy:8080/), else 407. Re-read when it changes (checked every 5
    /// s). Unset: anyone may scrape, as in Go. [Go: none]
    #[arg(long = "auth.scrape-users", value_name = "FILE")]
    pub scrape_users: Option<PathBuf>,

    /// Also require a user of --auth.scrape-users, by `Authorization: Basic`, for GET /clients,
    /// /metrics and / (401 otherwise; Prometheus: basic_auth in http_sd_configs and in the job
    /// scraping the proxy). /-/healthy stays open for load balancers. [Go: none]
    #[arg(long = "auth.protect-api", requires = "scrape_users")]
    pub protect_api: bool,

    // --- Shares of the connection limit (issue 16): one peer cannot take what all need. ---
    /// Connections that parked polls never take: kept for scrapes, pushes and /-/healthy
    /// whatever number of polls arrive. A poll beyond the rest gets 503 (clients poll again
    /// after a back-off). At most half of --web.max-connections is reserved. [Go: none]
    #[arg(
        long = "web.reserved-connections",
        value_name = "N",
        default_value_t = 64
    )]
    pub reserved_connections: usize,

    /// Most connections one source address keeps waiting for a request (kept alive between
    /// requests, or opened and silent); beyond it such a connection is closed. Addresses in
    /// --web.trusted-proxies are exempt. Raise it for a Prometheus scraping more targets than
    /// this through the proxy (it keeps a connection alive per target). [Go: none]
    #[arg(long = "web.max-idle-per-address", value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_idle_per_address: u32,

    /// Most polls one source address has parked at once; beyond it a poll gets 503. A client
    /// parks up to 4; raise it for many clients behind one NAT address (or list the address in
    /// --web.trusted-proxies, which are exempt). [Go: none]
    #[arg(long = "poll.max-parked-per-address", value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parked_per_address: u32,

    /// Longest hold of a poll that no credential vouches for (no --auth.client-tokens token and
    /// no client certificate), even with --poll.max-hold 0s: it is then answered 408 and the
    /// client polls again. 0s: no bound beyond --poll.max-hold. [Go: none]
    #[arg(long = "poll.max-hold-unauthenticated", value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub poll_max_hold_unauthenticated: Duration,

    /// Print a bcrypt line for --auth.scrape-users (`user:$2y$10$...`; the part after the colon
    /// is a basic_auth_users hash for --web.config.file) and exit: the password is read from
    /// standard input (e.g. `printf %s "$PW" | pushprox-proxy --hash-password prometheus >>
    /// users`; one trailing newline is dropped). [Go: none]
    #[arg(long = "hash-password", value_name = "USER")]
    pub hash_password: Option<String>,

    // Revocation (issue 16): no connection outlives its welcome.
    /// After this long from its accept, a connection's next answer carries `Connection: close`
    /// and the connection ends (parked polls are not cut). With a TLS configuration change, a
    /// kept-alive connection whose client certificate no longer verifies is refused (403) and
    /// closed at its next request whatever its age. 0s: no limit. [Go: none]
    #[arg(long = "web.max-connection-age", value_name = "DURATION", default_value = "1h", value_parser = duration)]
    pub max_connection_age: Duration,

    // Password checks (basic_auth_users, --auth.scrape-users): what a peer sending wrong
    // passwords can make the proxy spend. See auth/passwords.rs.
    /// Threads that run bcrypt for password checks; 0: one per core. A check waits for a free
    /// one, so wrong passwords never take more than these threads. [Go: none]
    #[arg(long = "auth.check-workers", value_name = "N", default_value_t = 0)]
    pub auth_check_workers: usize,

    /// Password checks that may wait for a bcrypt thread; beyond, a check is answered 503 at
    /// once (with Retry-After: 1). [Go: none]
    #[arg(long = "auth.check-queue", value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub auth_check_queue: u64,

    /// How long a successful login (user and a salted digest of the password, never the
    /// password) is remembered after its last use; a remembered login costs no bcrypt and is
    /// never limited. Emptied when the users change. 0s: every request runs bcrypt. [Go: none]
    #[arg(long = "auth.cache-ttl", value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub auth_cache_ttl: Duration,

    /// Failed password checks one address (an IPv6 /64) may cause per --auth.failure-interval;
    /// beyond, its checks are answered 429 with Retry-After without running bcrypt until the
    /// interval ends (checks in flight count too). Logged once per interval with a count.
    /// Behind a load balancer every scraper shares its address. [Go: none]
    #[arg(long = "auth.max-failures", value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_max_failures: u32,

    /// The interval of --auth.max-failures. [Go: none]
    #[arg(long = "auth.failure-interval", value_name = "DURATION", default_value = "1m", value_parser = duration)]
    pub auth_failure_interval: Duration,

    #[command(flatten)]
    pub registration: RegistrationLimits,

    #[command(flatten)]
    pub daemon: DaemonFlags,
}

impl Config {
    /// Flags that cannot go together, as the message for the operator.
    pub fn conflicts(&self) -> Option<String> {
        if self.web_config_file.is_some() && (self.tls_cert.is_some() || self.tls_key.is_some()) {
            return Some("--web.config.file and --tls.cert/--tls.key both configure TLS: drop --tls.cert and --tls.key, and put cert_file and key_file under tls_server_config in the web config file".into());
        }
        None
    }

    /// `deadline` less `--scrape.timeout-offset`, at most a quarter of it: when the proxy
    /// answers a scrape that has that deadline, and, applied twice, the deadline clients get.
    pub fn before_deadline(&self, deadline: Duration) -> Duration {
        deadline - self.scrape_timeout_offset.min(deadline / 4)
    }

    /// The deadline of a scrape that asked for `requested` (None: it did not say).
    pub fn effective_deadline(&self, requested: Option<Duration>) -> Duration {
        let asked = requested.unwrap_or(self.scrape_default_timeout);
        asked.min(self.scrape_max_timeout)
    }

    /// The limits of password checking, from the `--auth.*` flags.
    pub fn password_limits(&self) -> crate::auth::passwords::PasswordLimits {
        crate::auth::passwords::PasswordLimits {
            workers: match self.auth_check_workers {
                // One bcrypt thread per core.
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            },
            queue: usize::try_from(self.auth_check_queue).unwrap_or(usize::MAX),
            cache_ttl: self.auth_cache_ttl,
            max_failures: self.auth_max_failures,
            failure_interval: self.auth_failure_interval.max(Duration::from_secs(1)),
        }
    }
}

/// What the registry holds: how many clients, and how much each may announce with its polls
/// (`X-PushProx-Labels`, `X-PushProx-Targets`). Before authentication anyone may poll, so
/// these bound the memory one peer can make the proxy keep and the size of /clients.
/// Refusals are counted in pushprox_polls_refused_total{reason}.
#[derive(Args, Debug, Clone)]
pub struct RegistrationLimits {
    /// Most clients registered at once (polling, or seen within --registration.timeout). A poll
    /// for a new FQDN beyond it gets 503; registered clients go on. A client costs about 1 KiB,
    /// and about twice --registration.max-label-bytes with the largest announcement. [Go: none]
    #[arg(long = "registration.max-clients", value_name = "N", default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_clients: u32,

    /// Most labels a client may announce: its own (--label) and its targets' own (--sd.target)
    /// counted together; more get 400. [Go: none]
    #[arg(
        long = "registration.max-labels",
        value_name = "N",
        default_value_t = 64
    )]
    pub max_labels: usize,

    /// Longest label name a client may announce, in bytes; longer gets 400. [Go: none]
    #[arg(
        long = "registration.max-label-name-length",
        value_name = "BYTES",
        default_value_t = 128
    )]
    pub max_label_name_length: usize,

    /// Longest label value a client may announce, in bytes; longer gets 400. [Go: none]
    #[arg(
        long = "registration.max-label-value-length",
        value_name = "BYTES",
        default_value_t = 1024
    )]
    pub max_label_value_length: usize,

    /// Largest entry of one client in /clients: its target groups as written there, the
    /// client's labels repeated in each target's group. Larger gets 400. [Go: none]
    #[arg(long = "registration.max-label-bytes", value_name = "SIZE", default_value = "8KiB", value_parser = parse_size)]
    pub max_label_bytes: u64,

    /// Most targets (--sd.target ports) a client may announce; more get 400. [Go: none]
    #[arg(
        long = "registration.max-targets",
        value_name = "N",
        default_value_t = 64
    )]
    pub max_targets: usize,
}

/// A size such as `512KiB`, `64MiB`, `1GiB`, `10MB` or `1048576` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| factor != 0)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            format!(
                "\"{text}\" is not a size: expected e.g. 512KiB, 64MiB, 1GiB or a number of bytes"
            )
        })
}

/// A head limit: a size between 1 KiB and 1 MiB.
fn parse_head_size(text: &str) -> Result<usize, String> {
    let n = parse_size(text)?;
    if !(1024..=1 << 20).contains(&n) {
        return Err(format!("{text} is outside 1KiB..1MiB"));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_flag_names_work() {
        let c = Config::try_parse_from([
            "pushprox-proxy",
            "--web.listen-address",
            ":9999",
            "--scrape.max-timeout=1m",
            "--registration.timeout",
            "30s",
            "--log.format",
            "json",
        ])
        .unwrap();
        assert_eq!(c.listen.candidates(), ["[::]:9999", "0.0.0.0:9999"]);
        assert_eq!(c.scrape_max_timeout, Duration::from_secs(60));
        assert_eq!(c.registration_timeout, Duration::from_secs(30));
        assert_eq!(
            c.effective_deadline(Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        assert_eq!(c.effective_deadline(None), Duration::from_secs(15));
        let ms = Duration::from_millis;
        assert_eq!(c.before_deadline(ms(10_000)), ms(9_500));
        assert_eq!(c.before_deadline(ms(1_000)), ms(750), "a quarter at most");
        assert_eq!(c.before_deadline(ms(0)), ms(0));
        let go =
            Config::try_parse_from(["pushprox-proxy", "--scrape.timeout-offset", "0s"]).unwrap();
        assert_eq!(go.before_deadline(ms(1_000)), ms(1_000));
        let plain = Config::try_parse_from(["pushprox-proxy", "-l", "127.0.0.1:80"]).unwrap();
        assert_eq!(plain.listen.candidates(), ["127.0.0.1:80"]);
    }

    #[test]
    fn a_go_v0_2_0_command_line_parses_whole() {
        // Every flag of the Go proxy v0.2.0's --help, in its `--name=value` form.
        let c = Config::try_parse_from([
            "pushprox-proxy",
            "--web.listen-address=:9999",
            "--scrape.max-timeout=2m",
            "--scrape.default-timeout=10s",
            "--registration.timeout=1m",
            "--log.level=debug",
            "--log.format=json",
        ])
        .unwrap();
        assert_eq!(c.listen.port, 9999);
        assert_eq!(c.scrape_default_timeout, Duration::from_secs(10));
        assert_eq!(c.daemon.log_level.filter(), log::LevelFilter::Debug);
        assert_eq!(c.daemon.log_format, pushprox_daemon::logger::Format::Json);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1gib").unwrap(), 1 << 30);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("0").unwrap(), 0);
        for bad in ["", "MiB", "1.5MiB", "-1", "5 parsecs", "99999999999TiB"] {
            assert!(
                parse_size(bad).unwrap_err().contains("is not a size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn security_defaults_change_nothing() {
        let c = Config::try_parse_from(["pushprox-proxy"]).unwrap();
        assert!(c.tls_cert.is_none() && c.client_tokens.is_none() && c.scrape_users.is_none());
        assert!(!c.protect_api);
        assert_eq!(c.poll_max_hold, Duration::ZERO);
        assert_eq!(c.push_max_body, 256 << 20);
        assert_eq!(c.read_timeout, Duration::from_secs(30));
        assert_eq!(c.registration.max_clients, 30_000);
        assert_eq!(c.registration.max_label_bytes, 8192);
        for (args, flag) in [
            (&["--tls.cert", "c.pem"][..], "--tls.key"),
            (&["--tls.key", "k.pem"][..], "--tls.cert"),
            (&["--auth.protect-api"][..], "--auth.scrape-users"),
        ] {
            let err = Config::try_parse_from(
                std::iter::once("pushprox-proxy").chain(args.iter().copied()),
            )
            .unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn web_config_replaces_the_tls_flags() {
        let c = Config::try_parse_from(["pushprox-proxy", "--web.config.file", "web.yml"]).unwrap();
        assert!(c.conflicts().is_none());
        let c = Config::try_parse_from([
            "pushprox-proxy",
            "--web.config.file",
            "web.yml",
            "--tls.cert",
            "c.pem",
            "--tls.key",
            "k.pem",
        ])
        .unwrap();
        let conflict = c.conflicts().unwrap();
        assert!(
            conflict.contains("drop --tls.cert and --tls.key"),
            "{conflict}"
        );
    }

    #[test]
    fn bad_duration_names_the_flag_and_the_form() {
        let err = Config::try_parse_from(["pushprox-proxy", "--scrape.max-timeout", "5 minutes"])
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--scrape.max-timeout"), "{text}");
        assert!(text.contains("15s"), "{text}");
        assert_eq!(err.exit_code(), 2);
    }
}
