#!/usr/bin/env bash
# End-to-end test: real Prometheus scrapes two real node_exporters through our proxy and clients.
#
#   scripts/e2e.sh                                   # builds the release binaries first
#   PUSHPROX_BIN_DIR=target/debug scripts/e2e.sh     # uses binaries already built there
#   E2E_KEEP_TMP=1 scripts/e2e.sh                    # keep the temp dir (logs, config) on success too
#
# Needs: prometheus and promtool (2.28 or later, for http_sd), prometheus-node-exporter (or
# node_exporter), curl, python3. On Debian: apt-get install prometheus prometheus-node-exporter.
#
# Layout, all on this machine: loopback "hosts" 127.0.0.2 and 127.0.0.3 each run a node_exporter
# on the same port P and have a pushprox-client with --fqdn 127.0.0.2 / 127.0.0.3; the proxy and
# Prometheus listen on 127.0.0.1. Prometheus job `node` has static targets 127.0.0.2:P,
# 127.0.0.3:P and 127.0.0.4:P (no client there: must be down); job `node_sd` finds the clients
# through the proxy's /clients (http_sd_configs). A second proxy on 127.0.0.1 runs with
# --auth.scrape-users (user prom, a random password made for the run, never printed); both
# clients poll it too; job `node_auth` scrapes through it with the password in proxy_url (must be
# up), job `node_auth_bad` with a wrong one (must be down, with a 407). Every component picks a
# free port and its logs go to a temp dir, printed on failure (secrets masked). Ends with
# "e2e: PASS" or "e2e: FAIL: reason", exit 0 or 1.
#
# Discovery from the clients (issue 10): a third proxy has two more clients for the same hosts,
# started with --label env=e2e --sd.target P:job=sd_node --sd.target Q:job=sd_process (a second
# node_exporter on port Q of each host stands in for a process exporter; the jobs are named so
# that their series do not collide with the static job's). Job `pushprox` is
# one http_sd_configs block and no relabelling (every client of that proxy announces); its
# targets are fqdn:port with the job and env labels the clients announced. Job `process_only`
# keeps the job=sd_process targets of the same discovery with one keep rule. The README's own
# blocks, as they are written, are run by scripts/readme-e2e.sh.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_harness

e2e_prelude e2e

# --- ports -------------------------------------------------------------------------------------
# P is the one port of every node_exporter "host"; 127.0.0.4:P is a target with no client.
P=$(free_port 127.0.0.2 127.0.0.3 127.0.0.4) || fail "no free port on 127.0.0.2-4"
Q=$(free_port 127.0.0.2 127.0.0.3) || fail "no free port on 127.0.0.2-3"
[ "$Q" = "$P" ] && { Q=$(free_port 127.0.0.2 127.0.0.3) || fail "no free port on 127.0.0.2-3"; }
[ "$Q" = "$P" ] && fail "no second free port on 127.0.0.2-3"
mapfile -t PORTS < <(free_ports 8)
[ "${#PORTS[@]}" = 8 ] || fail "no free ports on 127.0.0.1"
PROXY_PORT=${PORTS[0]} PROM_PORT=${PORTS[1]} CM2_PORT=${PORTS[2]} CM3_PORT=${PORTS[3]}
AUTH_PROXY_PORT=${PORTS[4]} SD_PROXY_PORT=${PORTS[5]} SDM2_PORT=${PORTS[6]} SDM3_PORT=${PORTS[7]}
SD_PROXY=http://127.0.0.1:$SD_PROXY_PORT
PROXY=http://127.0.0.1:$PROXY_PORT
AUTH_PROXY=http://127.0.0.1:$AUTH_PROXY_PORT
PROM=http://127.0.0.1:$PROM_PORT
say "temp dir $TMP; proxy $PROXY, proxy with scrape auth $AUTH_PROXY, prometheus $PROM," \
    "node_exporters on 127.0.0.2:$P and 127.0.0.3:$P"

# --- the scrape user of the second proxy -------------------------------------------------------
# A random password for this run only; masked (***) in everything the script prints. It is in
# $TMP/scrape-users (hashed) and $TMP/prometheus.yml (the temp dir is mode 700).
AUTH_USER=prom
AUTH_PW=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
[ -n "$AUTH_PW" ] || fail "could not make a password"
SECRETS+=("$AUTH_PW")
AUTH_BAD_PW=wrong-password
printf %s "$AUTH_PW" | "$PROXY_BIN" --hash-password "$AUTH_USER" >"$TMP/scrape-users" 2>"$TMP/hash-password.log" ||
    fail "pushprox-proxy --hash-password: $(cat "$TMP/hash-password.log")"

# --- targets, proxy, clients -------------------------------------------------------------------
start_node_exporter() { # HOST [PORT]
    local port=${2:-$P}
    start_bg "node_exporter $1:$port" "$TMP/node_exporter-$1-$port.log" "$NODE_EXPORTER" \
        --web.listen-address="$1:$port" \
        --collector.disable-defaults --collector.cpu --collector.meminfo --collector.loadavg
    wait_http "node_exporter $1:$port" "$LAST_PID" "http://$1:$port/metrics" 15 || fail "$FAIL_REASON"
}
start_node_exporter 127.0.0.2
start_node_exporter 127.0.0.3
start_node_exporter 127.0.0.2 "$Q"
start_node_exporter 127.0.0.3 "$Q"
ok "node_exporters answer on 127.0.0.2 and 127.0.0.3, ports $P and $Q"

start_bg proxy "$TMP/proxy.log" "$PROXY_BIN" -l "127.0.0.1:$PROXY_PORT" --log.level debug
PROXY_PID=$LAST_PID
wait_http proxy "$PROXY_PID" "$PROXY/-/healthy" 15 || fail "$FAIL_REASON"
ok "proxy healthy"

start_bg "proxy with scrape auth" "$TMP/proxy-auth.log" "$PROXY_BIN" -l "127.0.0.1:$AUTH_PROXY_PORT" \
    --auth.scrape-users "$TMP/scrape-users" --log.level debug
wait_http "proxy with scrape auth" "$LAST_PID" "$AUTH_PROXY/-/healthy" 15 || fail "$FAIL_REASON"
ok "proxy with scrape auth healthy"

# Each client polls both proxies.
start_client() { # FQDN METRICS_PORT
    start_bg "client $1" "$TMP/client-$1.log" "$CLIENT_BIN" --proxy-url "$PROXY/" \
        --proxy-url "$AUTH_PROXY/" --fqdn "$1" --metrics-addr "127.0.0.1:$2" --log.level debug
    wait_http "client $1" "$LAST_PID" "http://127.0.0.1:$2/-/healthy" 15 || fail "$FAIL_REASON"
}
start_client 127.0.0.2 "$CM2_PORT"
start_client 127.0.0.3 "$CM3_PORT"
ok "clients healthy"

# Issue 10: clients that announce their labels and exporters, on a proxy of their own.
start_bg "proxy for discovery" "$TMP/proxy-sd.log" "$PROXY_BIN" -l "127.0.0.1:$SD_PROXY_PORT" --log.level debug
wait_http "proxy for discovery" "$LAST_PID" "$SD_PROXY/-/healthy" 15 || fail "$FAIL_REASON"
start_announcing_client() { # FQDN METRICS_PORT
    start_bg "announcing client $1" "$TMP/client-sd-$1.log" "$CLIENT_BIN" --proxy-url "$SD_PROXY/" \
        --fqdn "$1" --metrics-addr "127.0.0.1:$2" --log.level debug \
        --label env=e2e --sd.target "$P:job=sd_node" --sd.target "$Q:job=sd_process"
    wait_http "announcing client $1" "$LAST_PID" "http://127.0.0.1:$2/-/healthy" 15 || fail "$FAIL_REASON"
}
start_announcing_client 127.0.0.2 "$SDM2_PORT"
start_announcing_client 127.0.0.3 "$SDM3_PORT"
ok "announcing clients healthy"

# clients_listed [PROXY_URL]: the targets of the proxy's /clients, sorted, one a line.
clients_listed() {
    curl -sS --max-time 2 "${1:-$PROXY}/clients" | python3 -c '
import json, sys
print("\n".join(sorted(t for g in json.load(sys.stdin) for t in g["targets"])))'
}

# lists_want PROXY_URL: whether its clients_listed, kept in got, are $want.
lists_want() {
    got=$(clients_listed "$1" 2>&1)
    [ "$got" = "$want" ]
}

say "check: /clients of both proxies lists both clients"
want=$(printf '127.0.0.2\n127.0.0.3')
for url in "$PROXY" "$AUTH_PROXY"; do
    got=""
    retry 100 0.1 lists_want "$url" || fail "$url/clients did not list 127.0.0.2 and 127.0.0.3 within 10s; last: $got"
    ok "$url/clients = $(curl -sS --max-time 2 "$url/clients")"
done

# --- scrapes through the proxy with curl -------------------------------------------------------
check_scrape_with_curl() {
    say "check: curl -x $PROXY http://127.0.0.2:$P/metrics gives 200 and node_ metrics"
    local code lines
    code=$(curl -sS --max-time 10 -x "$PROXY" -o "$TMP/scrape.out" -w '%{http_code}' \
        "http://127.0.0.2:$P/metrics") || fail "curl through the proxy failed (status $code)"
    lines=$(grep -c '^node_' "$TMP/scrape.out")
    [ "$code" = 200 ] || fail "scrape through the proxy: status $code, body: $(head -c 300 "$TMP/scrape.out")"
    [ "$lines" -gt 0 ] || fail "scrape through the proxy: 200 but no node_ lines: $(head -c 300 "$TMP/scrape.out")"
    ok "200 with $lines node_ lines"
}

check_unknown_client_fails_fast() {
    say "check: a scrape of 127.0.0.9 (no client) with a 1 s deadline gives a 5xx with a reason within 2.5 s"
    local out code secs
    out=$(curl -sS --max-time 10 -x "$PROXY" -o "$TMP/unknown.out" -w '%{http_code} %{time_total}' \
        -H 'X-Prometheus-Scrape-Timeout-Seconds: 1' "http://127.0.0.9:$P/metrics") ||
        fail "curl for a scrape of an unknown client failed: $out"
    read -r code secs <<<"$out"
    case "$code" in 5??) ;; *) fail "scrape of an unknown client: status $code, want 5xx" ;; esac
    [ -s "$TMP/unknown.out" ] || fail "scrape of an unknown client: status $code with an empty body"
    python3 -c "import sys; sys.exit(float('$secs') >= 2.5)" ||
        fail "scrape of an unknown client took ${secs}s, deadline was 1s"
    ok "$code after ${secs}s: $(head -c 200 "$TMP/unknown.out")"
}

# Section 6 of PROTOCOL.md: the Go names, which dashboards use.
check_self_metrics() {
    say "check: proxy /metrics has pushprox_proxy_clients 2; client /metrics has pushprox_client_ counters"
    curl -sS --max-time 5 "$PROXY/metrics" >"$TMP/proxy-metrics.out" || fail "GET $PROXY/metrics failed"
    grep -Eq '^pushprox_proxy_clients 2(\.0*)?$' "$TMP/proxy-metrics.out" ||
        fail "proxy /metrics: no 'pushprox_proxy_clients 2' in: $(grep pushprox_proxy_clients "$TMP/proxy-metrics.out")"
    curl -sS --max-time 5 "http://127.0.0.1:$CM2_PORT/metrics" >"$TMP/client-metrics.out" ||
        fail "GET client /metrics failed"
    grep -q '^pushprox_client_scrape_errors_total' "$TMP/client-metrics.out" ||
        fail "client /metrics has no pushprox_client_scrape_errors_total"
    ok "proxy and client serve their metrics"
}

# The security issue: the proxy with --auth.scrape-users answers a scrape without credentials,
# or with a wrong password, 407 with a Basic challenge, and the right password 200.
check_scrape_auth_with_curl() {
    say "check: curl -x $AUTH_PROXY http://127.0.0.2:$P/metrics gives 407 + Proxy-Authenticate: Basic" \
        "without credentials and with a wrong password, 200 with -U $AUTH_USER:***"
    local code challenge lines
    code=$(curl -sS --max-time 10 -x "$AUTH_PROXY" -D "$TMP/auth-none.headers" -o "$TMP/auth-none.out" \
        -w '%{http_code}' "http://127.0.0.2:$P/metrics") || fail "curl without credentials failed (status $code)"
    [ "$code" = 407 ] || fail "scrape without credentials: status $code, want 407"
    challenge=$(tr -d '\r' <"$TMP/auth-none.headers" | grep -i '^proxy-authenticate:')
    grep -Eiq '^proxy-authenticate: *basic( |$)' <<<"$challenge" ||
        fail "scrape without credentials: 407 without a Proxy-Authenticate: Basic header; headers: $(tr -d '\r' <"$TMP/auth-none.headers" | one_line)"

    # The passwords go to curl by a config on stdin, not on its command line.
    code=$(printf 'proxy-user = "%s:%s"\n' "$AUTH_USER" "$AUTH_BAD_PW" |
        curl -sS --max-time 10 -K - -x "$AUTH_PROXY" -o /dev/null -w '%{http_code}' "http://127.0.0.2:$P/metrics") ||
        fail "curl with a wrong password failed (status $code)"
    [ "$code" = 407 ] || fail "scrape with a wrong password: status $code, want 407"

    code=$(printf 'proxy-user = "%s:%s"\n' "$AUTH_USER" "$AUTH_PW" |
        curl -sS --max-time 10 -K - -x "$AUTH_PROXY" -o "$TMP/auth-good.out" -w '%{http_code}' \
            "http://127.0.0.2:$P/metrics" 2>&1) || fail "curl with the password failed (status $code)"
    [ "$code" = 200 ] || fail "scrape with the password: status $code, want 200; body: $(head -c 300 "$TMP/auth-good.out")"
    lines=$(grep -c '^node_' "$TMP/auth-good.out")
    [ "$lines" -gt 0 ] || fail "scrape with the password: 200 but no node_ lines"
    ok "no credentials: 407, $challenge; wrong password: 407; $AUTH_USER:***: 200 with $lines node_ lines"
}

# Issue 10: /clients lists what the clients announced, exactly.
check_announced() {
    say "check: $SD_PROXY/clients lists fqdn:port with the announced labels"
    local want got="" i
    want=$(printf '[{"targets":["127.0.0.2:%s"],"labels":{"env":"e2e","job":"sd_node"}},{"targets":["127.0.0.2:%s"],"labels":{"env":"e2e","job":"sd_process"}},{"targets":["127.0.0.3:%s"],"labels":{"env":"e2e","job":"sd_node"}},{"targets":["127.0.0.3:%s"],"labels":{"env":"e2e","job":"sd_process"}}]' "$P" "$Q" "$P" "$Q")
    for ((i = 0; i < 100; i++)); do # 10 s
        got=$(curl -sS --max-time 2 "$SD_PROXY/clients" 2>&1)
        [ "$got" = "$want" ] && break
        sleep 0.1
    done
    [ "$got" = "$want" ] || fail "$SD_PROXY/clients is $got, want $want"
    ok "$got"
}

check_announced
check_scrape_with_curl
check_unknown_client_fails_fast
check_self_metrics
check_scrape_auth_with_curl

# --- Prometheus --------------------------------------------------------------------------------
say "check: promtool check config"
start_prometheus <<EOF
  # Static targets scraped through the proxy; 127.0.0.4 has no client and must be down.
  - job_name: node
    proxy_url: $PROXY/
    static_configs:
      - targets: ['127.0.0.2:$P', '127.0.0.3:$P', '127.0.0.4:$P']
  # Targets discovered from the proxy's /clients (FQDNs without a port): add the port.
  - job_name: node_sd
    proxy_url: $PROXY/
    http_sd_configs:
      - url: $PROXY/clients
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__address__]
        regex: '(.*)'
        target_label: __address__
        replacement: '\${1}:$P'
  # Through the proxy with --auth.scrape-users: the right password (up), a wrong one (down, 407).
  - job_name: node_auth
    proxy_url: http://$AUTH_USER:$AUTH_PW@127.0.0.1:$AUTH_PROXY_PORT/
    static_configs:
      - targets: ['127.0.0.2:$P', '127.0.0.3:$P']
  - job_name: node_auth_bad
    proxy_url: http://$AUTH_USER:$AUTH_BAD_PW@127.0.0.1:$AUTH_PROXY_PORT/
    static_configs:
      - targets: ['127.0.0.2:$P', '127.0.0.3:$P']
  # Discovery from the clients with no relabelling: every client of this proxy announces.
  - job_name: pushprox
    proxy_url: $SD_PROXY/
    http_sd_configs:
      - url: $SD_PROXY/clients
        refresh_interval: 1s
  # One exporter of the same discovery, chosen by one keep rule (renamed, so that its series
  # do not collide with job pushprox's).
  - job_name: process_only
    proxy_url: $SD_PROXY/
    http_sd_configs:
      - url: $SD_PROXY/clients
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [job]
        regex: sd_process
        action: keep
      - target_label: job
        replacement: process_only
EOF
ok "prometheus ready"

check_static_targets() {
    say "check: up{job=\"node\"} is 1 for 127.0.0.2:$P and 127.0.0.3:$P, 0 for 127.0.0.4:$P"
    wait_query "up{job=\"node\"}" "$(printf '127.0.0.2:%s 1\n127.0.0.3:%s 1\n127.0.0.4:%s 0' "$P" "$P" "$P")" 60
    ok "$(prom_query "$PROM" "up{job=\"node\"}" | one_line)"

    say "check: node_memory_MemTotal_bytes and node_load1 arrived for both clients"
    local metric
    for metric in node_memory_MemTotal_bytes node_load1; do
        wait_query "count by (instance) ($metric{job=\"node\"})" "$(printf '127.0.0.2:%s 1\n127.0.0.3:%s 1' "$P" "$P")" 10
    done
    ok "$(prom_query "$PROM" "node_memory_MemTotal_bytes{job=\"node\"}" | one_line)"
}

# Issue 3: Prometheus discovers the clients from the proxy's /clients (http_sd_configs).
check_http_sd() {
    say "check: job node_sd discovered both clients through $PROXY/clients and they are up"
    wait_query "up{job=\"node_sd\"}" "$(printf '127.0.0.2:%s 1\n127.0.0.3:%s 1' "$P" "$P")" 60
    ok "$(prom_query "$PROM" "up{job=\"node_sd\"}" | one_line)"
}

# target_errors JOB: "<instance> <health> <lastError>" of each active target of JOB, sorted.
target_errors() {
    curl -sS --max-time 3 -G --data-urlencode state=active "$PROM/api/v1/targets" |
        python3 -c '
import json, sys
r = json.load(sys.stdin)
if r.get("status") != "success":
    sys.exit("targets failed: %s" % r.get("error"))
ts = [t for t in r["data"]["activeTargets"] if t["scrapePool"] == sys.argv[1]]
for t in sorted(ts, key=lambda t: t["labels"].get("instance", "")):
    print(t["labels"].get("instance", "-"), t["health"], t["lastError"])
' "$1"
}

# The security issue, "verify with the real Prometheus": proxy_url with user:password@ makes
# Prometheus send Proxy-Authorization; the right password scrapes, a wrong one gets 407.
check_scrape_auth() {
    say "check: job node_auth (proxy_url http://$AUTH_USER:***@127.0.0.1:$AUTH_PROXY_PORT/) is up for both clients"
    wait_query "up{job=\"node_auth\"}" "$(printf '127.0.0.2:%s 1\n127.0.0.3:%s 1' "$P" "$P")" 60
    ok "$(prom_query "$PROM" "up{job=\"node_auth\"}" | one_line)"

    say "check: job node_auth_bad (wrong password) is down for both, its lastError says 407"
    wait_query "up{job=\"node_auth_bad\"}" "$(printf '127.0.0.2:%s 0\n127.0.0.3:%s 0' "$P" "$P")" 60
    local got="" deadline=$((SECONDS + 15))
    while [ "$SECONDS" -lt "$deadline" ]; do
        got=$(target_errors node_auth_bad 2>&1)
        [ "$(grep -c ' down .*407' <<<"$got")" = 2 ] && break
        sleep 0.5
    done
    [ "$(grep -c ' down .*407' <<<"$got")" = 2 ] ||
        fail "node_auth_bad targets: want both down with a 407 in lastError; got [$(one_line <<<"$got")]"
    grep -qi 'Proxy Authentication Required' <<<"$got" ||
        fail "node_auth_bad lastError does not say Proxy Authentication Required: [$(one_line <<<"$got")]"
    ok "$(one_line <<<"$got")"
}

# Issue 10: discovery with no relabelling: the clients' job and env labels on up.
check_discovery_from_clients() {
    say "check: job pushprox (no relabelling) scrapes fqdn:port with the clients' job and env labels"
    wait_query 'up{env="e2e",job=~"sd_node|sd_process"}' "$(printf '127.0.0.2:%s 1\n127.0.0.2:%s 1\n127.0.0.3:%s 1\n127.0.0.3:%s 1' "$P" "$Q" "$P" "$Q" | sort)" 60
    wait_query 'count(up{env="e2e",job="sd_node"} == 1)' "- 2" 10
    wait_query 'count(up{env="e2e",job="sd_process"} == 1)' "- 2" 10
    ok "$(prom_query "$PROM" 'up{env="e2e"}' | one_line)"
    say "check: job process_only keeps only the job=sd_process targets"
    wait_query 'up{job="process_only"}' "$(printf '127.0.0.2:%s 1\n127.0.0.3:%s 1' "$Q" "$Q")" 60
    wait_query 'count(node_load1{job="process_only"})' "- 2" 10
    ok "$(prom_query "$PROM" 'up{job="process_only"}' | one_line)"
}

check_static_targets
check_http_sd
check_scrape_auth
check_discovery_from_clients

PASSED=1
