#!/usr/bin/env bash
# End-to-end test of the recommended internet-facing setup (README, "Security"): ONE web config
# file on the proxy (--web.config.file: TLS, client certificates as identities, a bcrypt user)
# and the Prometheus job that goes with it, run by the real Prometheus and node_exporter.
#
#   scripts/web-config-e2e.sh                                 # builds the release binaries first
#   PUSHPROX_BIN_DIR=target/debug scripts/web-config-e2e.sh   # uses binaries already built there
#   E2E_KEEP_TMP=1 scripts/web-config-e2e.sh                  # keep the temp dir on success too
#
# Needs: prometheus and promtool (2.42 here), prometheus-node-exporter (or node_exporter),
# openssl, curl, python3; htpasswd (apache2-utils) if present, else the proxy's --hash-password.
#
# What it does, all on loopback: openssl makes a CA, the proxy's certificate for 127.0.0.1 and a
# client certificate for host1.example. A node_exporter listens on 127.0.0.2:P; pushprox-client
# --fqdn host1.example polls the proxy over mutual TLS and scrapes 127.0.0.2 (--scrape.target-
# host) on port P only (--scrape.allow). The proxy runs with nothing but --web.config.file
# (VerifyClientCertIfGiven + client_ca_file + basic_auth_users with a random password for this
# run, never printed). Prometheus then must see:
#   up{job="node"} = 1         host1.example:P, found through the proxy's /clients (http_sd with
#                              basic_auth and tls_config), scraped through proxy_url
#                              https://prometheus:PASSWORD@127.0.0.1:PORT/ with tls_config ca_file;
#   up{job="pushprox"} = 1     the proxy's own /metrics, with basic_auth;
#   up{job="node_bad_password"} = 0, its lastError a 407.
# Also with curl: /poll without a client certificate is 403, the API without a password 401.
# Last, README.md must show this web config and these jobs (but for addresses, paths and the
# password), so that the documented setup is the tested one.
# Every wait is bounded; everything started is stopped on exit. Ends with "PASS" or
# "FAIL: reason", exit 0 or 1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_harness

e2e_prelude webcfg-e2e openssl

P=$(free_port 127.0.0.2) || fail "no free port on 127.0.0.2"
mapfile -t PORTS < <(free_ports 3)
[ "${#PORTS[@]}" = 3 ] || fail "no free ports on 127.0.0.1"
PROXY_PORT=${PORTS[0]} PROM_PORT=${PORTS[1]} CM_PORT=${PORTS[2]}
PROXY=https://127.0.0.1:$PROXY_PORT
PROM=http://127.0.0.1:$PROM_PORT
say "temp dir $TMP; proxy $PROXY, prometheus $PROM, node_exporter on 127.0.0.2:$P"

# --- certificates ------------------------------------------------------------------------------
ssl_ca pushprox-ca "pushprox test CA"
ssl_signed pushprox-ca proxy proxy IP:127.0.0.1 serverAuth
ssl_signed pushprox-ca host1 host1 DNS:host1.example clientAuth
ok "CA, proxy certificate (127.0.0.1), client certificate (host1.example)"

# --- the bcrypt user -----------------------------------------------------------------------------
PW=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
[ -n "$PW" ] || fail "could not make a password"
SECRETS+=("$PW")
HASH=$(bcrypt_hash prometheus "$PW") || fail "no bcrypt hash (htpasswd or --hash-password failed)"
case "$HASH" in '$2'?'$10$'*) ;; *) fail "not a bcrypt hash of cost 10: $HASH" ;; esac

# --- the web config: the README's recommended setup, verbatim but for paths -----------------------
cat >"$TMP/web.yml" <<EOF
# pushprox-proxy --web.config.file web.yml (the exporter-toolkit format)
tls_server_config:
  cert_file: proxy.crt
  key_file: proxy.key
  # Clients prove their FQDN with a certificate from this CA (a poll or push without one is
  # refused); Prometheus connects without one and authenticates with basic auth.
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: pushprox-ca.crt
  min_version: TLS12
basic_auth_users:
  # htpasswd -nBC 10 prometheus
  prometheus: $HASH
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
EOF

start_bg node_exporter "$TMP/node_exporter.log" "$NODE_EXPORTER" --web.listen-address="127.0.0.2:$P" \
    --collector.disable-defaults --collector.cpu --collector.meminfo --collector.loadavg
wait_http node_exporter "$LAST_PID" "http://127.0.0.2:$P/metrics" 15 || fail "$FAIL_REASON"
ok "node_exporter answers on 127.0.0.2:$P"

start_bg proxy "$TMP/proxy.log" "$PROXY_BIN" -l "127.0.0.1:$PROXY_PORT" --web.config.file "$TMP/web.yml" --log.level debug
PROXY_PID=$LAST_PID
wait_http proxy "$PROXY_PID" "$PROXY/-/healthy" 15 --cacert "$TMP/pushprox-ca.crt" || fail "$FAIL_REASON"
ok "proxy healthy over TLS"

start_bg client "$TMP/client.log" "$CLIENT_BIN" --proxy-url "$PROXY/" --tls.cacert "$TMP/pushprox-ca.crt" \
    --tls.cert "$TMP/host1.crt" --tls.key "$TMP/host1.key" --fqdn host1.example \
    --scrape.target-host 127.0.0.2 --scrape.allow "$P" --metrics-addr "127.0.0.1:$CM_PORT" --log.level debug
wait_http client "$LAST_PID" "http://127.0.0.1:$CM_PORT/-/healthy" 15 || fail "$FAIL_REASON"
ok "client healthy"

# --- curl checks ---------------------------------------------------------------------------------
say "check: the API without a password is 401; /clients with it lists host1.example"
code=$(http_status "$PROXY/clients" --cacert "$TMP/pushprox-ca.crt")
[ "$code" = 401 ] || fail "GET /clients without a password: $code, want 401"
# host1_listed: whether /clients, read with the password and kept in got, lists host1.example.
host1_listed() {
    got=$(printf 'user = "prometheus:%s"\n' "$PW" | curl -sS --max-time 2 -K - --cacert "$TMP/pushprox-ca.crt" "$PROXY/clients" 2>&1)
    grep -q '"host1.example"' <<<"$got"
}
got=""
retry 100 0.1 host1_listed || fail "/clients did not list host1.example within 10s: $got"
ok "401 without a password; /clients = $got"

say "check: a poll without a client certificate is refused 403"
code=$(curl -sS --max-time 5 -o "$TMP/poll-nocert.out" -w '%{http_code}' --cacert "$TMP/pushprox-ca.crt" \
    --data host1.example "$PROXY/poll") || true
[ "$code" = 403 ] || fail "POST /poll without a certificate: $code, want 403: $(cat "$TMP/poll-nocert.out")"
ok "403: $(head -c 200 "$TMP/poll-nocert.out")"

# --- Prometheus: the README's job, verbatim but for ports, paths and the password ------------------
start_prometheus <<EOF
  # Every client of the proxy, found through its /clients, scraped through it.
  - job_name: node
    proxy_url: https://prometheus:$PW@127.0.0.1:$PROXY_PORT/
    tls_config:
      ca_file: $TMP/pushprox-ca.crt
    http_sd_configs:
      - url: https://127.0.0.1:$PROXY_PORT/clients
        basic_auth:
          username: prometheus
          password: $PW
        tls_config:
          ca_file: $TMP/pushprox-ca.crt
    relabel_configs:
      - source_labels: [__address__]
        target_label: __address__
        replacement: '\${1}:$P'
  # The proxy's own metrics.
  - job_name: pushprox
    scheme: https
    basic_auth:
      username: prometheus
      password: $PW
    tls_config:
      ca_file: $TMP/pushprox-ca.crt
    static_configs:
      - targets: ['127.0.0.1:$PROXY_PORT']
  # Not in the README: the same scrape with a wrong password must fail (407).
  - job_name: node_bad_password
    proxy_url: https://prometheus:wrong-password@127.0.0.1:$PROXY_PORT/
    tls_config:
      ca_file: $TMP/pushprox-ca.crt
    static_configs:
      - targets: ['host1.example:$P']
EOF
ok "prometheus ready"

say "check: up{job=\"node\"} = 1 for host1.example:$P (http_sd + proxy_url with TLS and basic auth)"
wait_query 'up{job="node"}' "host1.example:$P 1" 60
wait_query 'count(node_load1{job="node"})' "- 1" 10
ok "$(prom_query "$PROM" 'up{job="node"}' | one_line)"

say "check: up{job=\"pushprox\"} = 1 (the proxy's /metrics with basic_auth)"
wait_query 'up{job="pushprox"}' "127.0.0.1:$PROXY_PORT 1" 30
ok "$(prom_query "$PROM" 'up{job="pushprox"}' | one_line)"

say "check: up{job=\"node_bad_password\"} = 0 with a 407"
wait_query 'up{job="node_bad_password"}' "host1.example:$P 0" 30
# bad_password_407: whether the lastError of job node_bad_password, kept in errors, has a 407.
bad_password_407() {
    errors=$(curl -sS --max-time 3 -G --data-urlencode state=active "$PROM/api/v1/targets" |
        python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    if t["scrapePool"] == "node_bad_password":
        print(t["health"], t["lastError"])' 2>&1)
    grep -q '407' <<<"$errors"
}
errors=""
retry 30 0.5 bad_password_407 || fail "node_bad_password: no 407 in lastError: $errors"
ok "$errors"

say "check: the README shows this web config and these jobs (but for addresses, paths, password)"
python3 - "$0" "$ROOT/README.md" <<'PY' || fail "the README's recommended setup differs from what this script runs: update one of them"
import sys
script, readme = (open(p).read() for p in sys.argv[1:3])
web = script.split('cat >"$TMP/web.yml" <<EOF\n')[1].split("\nEOF")[0]
web = web.replace("$HASH", "$2y$10$...")
prom = script.split("start_prometheus <<EOF\n")[1].split("\nEOF")[0]
jobs = prom.split("  # Not in the README")[0]
for a, b in [("$PW", "PASSWORD"), ("127.0.0.1:$PROXY_PORT", "proxy.example:8443"),
             ("$TMP/pushprox-ca.crt", "/etc/prometheus/pushprox-ca.crt"),
             ("'\\${1}:$P'", "'${1}:9100'")]:
    jobs = jobs.replace(a, b)
missing = [name for name, text in [("web config", web), ("Prometheus jobs", jobs)] if text not in readme]
if missing:
    sys.exit("not in README.md: " + ", ".join(missing))
PY
ok "README.md shows the same setup"

PASSED=1
