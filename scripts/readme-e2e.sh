#!/usr/bin/env bash
# The README's Prometheus configurations, run as they are written, against the real Prometheus and
# a mixed fleet: every `yaml` block of README.md that holds a `job_name` (but those of the
# Security section, which scripts/web-config-e2e.sh runs) is read from the README, given this
# run's loopback addresses and ports, and run in a Prometheus of its own. For each block the test
# knows which targets it must give (below, EXPECT): every one must be up, no other target may
# exist (a port added twice, a bare FQDN scraped on port 80), and Prometheus' log must hold no
# out-of-order or duplicate sample warning (two jobs writing the same series). A README block the
# test does not know fails the test: add what it must give to EXPECT.
#
#   scripts/readme-e2e.sh                                # builds the release binaries first
#   PUSHPROX_BIN_DIR=target/debug scripts/readme-e2e.sh  # uses binaries already built there
#   PUSHPROX_GO_BIN_DIR=DIR scripts/readme-e2e.sh        # the Go v0.2.0 pair already built in DIR
#
# The fleet, all on this machine, each "host" a loopback address:
# - host-a.example (our client, started with the README's own --sd.target command line, plus
#   --fqdn, --scrape.target-host 127.0.0.2 and --scrape.allow): node_exporter on 127.0.0.2:P, the
#   client's own /metrics on 127.0.0.2:Q (the "process" exporter the README announces on 9256),
#   and a node_exporter with TLS on 127.0.0.2:T (certificate for host-a.example only);
# - host-b.example (our client announcing nothing): node_exporter on 127.0.0.3:P, its own
#   /metrics on 127.0.0.3:Q (not announced, so not a target);
# - 127.0.0.4 (the Go PushProx v0.2.0 client, built by ../shared/tools/build-go-pushprox.sh
#   unless PUSHPROX_GO_BIN_DIR is given): node_exporter on 127.0.0.4:P, its /metrics on :Q.
# In the README's blocks proxy.example:8080 becomes the proxy's address, 9100 becomes P, 9256 Q
# (and 9100 becomes T in the TLS job); host names stay as written. nginx runs with the README's
# worker_connections block and the shipped scripts/nginx-shards.conf.template. The README's two metric
# tables are also compared with the live /metrics of the proxy and of host-a's client.
#
# Reasons: a job of its own (not from the README) scrapes a target with no client and one slower
# than scrape_timeout; Prometheus' /api/v1/targets must show the proxy's 504 and the client's
# 500 as lastError, each with its reason in the status line, not "context deadline exceeded".
#
# Logs: the proxies and host-a's client write logfmt (debug), host-b's client JSON; at the end
# every logfmt line must parse with a logfmt parser (ts, level, msg first, no field left in
# msg) and every JSON line pass jq.
#
# Needs: prometheus, promtool, prometheus-node-exporter, nginx, openssl, curl, python3, jq; Go (golang-go,
# installed by the build script) for the Go client.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_harness

e2e_prelude readme-e2e openssl

# --- the Go client ------------------------------------------------------------------------------
go_pushprox_bins

# --- ports, certificates ------------------------------------------------------------------------
# P, Q and T must be free on every "host" address.
P=$(free_port 127.0.0.2 127.0.0.3 127.0.0.4) || fail "no free port"
Q=$(free_port 127.0.0.2 127.0.0.3 127.0.0.4) || fail "no free port"
T=$(free_port 127.0.0.2) || fail "no free port"
[ "$P" != "$Q" ] || Q=$(free_port 127.0.0.2 127.0.0.3 127.0.0.4) || fail "no free port"
PROXY_PORT=$(free_port) || fail "no free port"
PROXY=http://127.0.0.1:$PROXY_PORT
mapfile -t SHARD_PORTS < <(free_ports 5) || fail "no free ports"
LB_PORT=${SHARD_PORTS[3]} GO_PORT=${SHARD_PORTS[4]}
LB=http://127.0.0.1:$LB_PORT
say "ports: exporters P=$P Q=$Q T=$T, proxy $PROXY_PORT, shards ${SHARD_PORTS[*]:0:3}, nginx $LB_PORT and $GO_PORT"

ssl_ca ca readme-e2e-ca
ssl_signed ca host-a host-a.example DNS:host-a.example
printf 'tls_server_config:\n  cert_file: %s/host-a.crt\n  key_file: %s/host-a.key\n' "$TMP" "$TMP" >"$TMP/node-tls.yml"

# --- the README's blocks -----------------------------------------------------------------------
# Writes $TMP/block-N.yml (a whole Prometheus configuration) and $TMP/blocks.txt ("N KEY" a line,
# KEY = job names and discovery, e.g. "pushprox/http_sd"), and $TMP/client-a.args (the README's
# client command line with --sd.target, one argument a line).
python3 - "$ROOT/README.md" "$TMP" "$PROXY_PORT" "$LB_PORT" "$GO_PORT" "$P" "$Q" "$T" <<'PY' || fail "could not read the README's blocks"
import re, shlex, sys
readme, tmp, proxy_port, lb_port, go_port, p, q, t = sys.argv[1:]
text = open(readme).read()
section = ""
blocks = []  # (section, lang, body)
for m in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```$", text, re.M | re.S):
    if m.group(1):
        if m.group(1).startswith("## "):
            section = m.group(1)[3:]
        continue
    blocks.append((section, m.group(2), m.group(3)))

def subst(body, port9100):
    body = body.replace("proxy.example:8080", "127.0.0.1:" + proxy_port)
    body = body.replace("nginx.example:8080", "127.0.0.1:" + lb_port)
    body = body.replace("nginx.example:8081", "127.0.0.1:" + go_port)
    body = re.sub(r"\b9100\b", port9100, body)
    return re.sub(r"\b9256\b", q, body)

listing = []
n = 0
for section, lang, body in blocks:
    if lang == "nginx" and "worker_connections" in body:
        open(tmp + "/nginx-main.conf", "w").write(body)
    if lang == "sh" and "--sd.target" in body:
        args = shlex.split(subst(body, p).replace("\\\n", " "))
        open(tmp + "/client-a.args", "w").write("\n".join(args[1:]) + "\n")
    if lang != "yaml" or section == "Security":
        continue
    if "job_name:" not in body:
        if any(k in body for k in ("relabel_configs", "proxy_url", "_sd_configs")):
            sys.exit("README.md has a Prometheus fragment without job_name (under %s): write the "
                     "whole job, so that it can be run as it is written:\n%s" % (section, body))
        continue
    n += 1
    jobs = re.findall(r"job_name: *(\S+)", body)
    kind = "static" if "static_configs" in body else ("shards" if "nginx.example" in body else "http_sd")
    key = ",".join(jobs) + "/" + kind
    tls = "_scheme: [https]" in body
    body = subst(body, t if tls else p)
    if not body.startswith("scrape_configs:"):
        body = "scrape_configs:\n" + body
    conf = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n" + body
    open("%s/block-%d.yml" % (tmp, n), "w").write(conf)
    listing.append("%d %s" % (n, key))
open(tmp + "/blocks.txt", "w").write("\n".join(listing) + "\n")
PY
[ -s "$TMP/client-a.args" ] || fail "README.md has no client command line with --sd.target"
[ -s "$TMP/nginx-main.conf" ] || fail "README.md has no nginx block with worker_connections"

# What each block must give: "JOB INSTANCE" of every target, all up, nothing else. The README's
# text says what each job is for; this is that, for the fleet above.
expect() { # KEY
    case "$1" in
    pushprox/http_sd) # every announced exporter with the client's job label; the others' node_exporter
        printf '%s\n' "node host-a.example:$P" "process host-a.example:$Q" \
            "pushprox host-b.example:$P" "pushprox 127.0.0.4:$P" ;;
    process_only/http_sd) printf '%s\n' "process host-a.example:$Q" ;;
    node/http_sd) # a port added to every FQDN listed alone; announced targets as they are
        printf '%s\n' "node host-a.example:$P" "process host-a.example:$Q" \
            "node host-b.example:$P" "node 127.0.0.4:$P" ;;
    node/static) printf '%s\n' "node host-a.example:$P" "node host-b.example:$P" ;;
    node,go-clients/shards) # our client's announced targets through 8080, the Go client's through 8081
        printf '%s\n' "node host-a.example:$P" "process host-a.example:$Q" "go-clients 127.0.0.4:$P" ;;
    node-tls/static) printf '%s\n' "node-tls host-a.example:$T" ;;
    *) return 1 ;;
    esac
}
while read -r n key; do
    expect "$key" >/dev/null || fail "README block $n ($key) is not known to this test: add what it must give to expect()"
done <"$TMP/blocks.txt"
ok "README blocks: $(cut -d' ' -f2 "$TMP/blocks.txt" | one_line)"

# --- exporters, proxy, clients -----------------------------------------------------------------
start_node_exporter() { # ADDR:PORT [ARG...]
    local at=$1
    shift
    start_bg "node_exporter $at" "$TMP/node_exporter-$at.log" "$NODE_EXPORTER" --web.listen-address="$at" \
        --collector.disable-defaults --collector.loadavg --collector.meminfo "$@"
}
start_node_exporter "127.0.0.2:$P"
start_node_exporter "127.0.0.3:$P"
start_node_exporter "127.0.0.4:$P"
start_node_exporter "127.0.0.2:$T" --web.config.file="$TMP/node-tls.yml"

start_bg proxy "$TMP/proxy.log" "$PROXY_BIN" -l "127.0.0.1:$PROXY_PORT" --log.level debug
wait_http proxy "$LAST_PID" "$PROXY/-/healthy" 15 || fail "$FAIL_REASON"

# Three proxies behind nginx, with the configuration the README shows (its template).
need nginx "apt-get install nginx" || fail "nginx is missing"
for i in 0 1 2; do
    start_bg "proxy shard $i" "$TMP/shard-$i.log" "$PROXY_BIN" -l "127.0.0.1:${SHARD_PORTS[$i]}" \
        --web.trusted-proxies 127.0.0.1 --poll.max-hold 50s --log.level debug
    wait_http "proxy shard $i" "$LAST_PID" "http://127.0.0.1:${SHARD_PORTS[$i]}/-/healthy" 15 || fail "$FAIL_REASON"
done
mkdir -p "$TMP/nginx"
sed -e "s/@SHARD0@/127.0.0.1:${SHARD_PORTS[0]}/g" -e "s/@SHARD1@/127.0.0.1:${SHARD_PORTS[1]}/g" \
    -e "s/@SHARD2@/127.0.0.1:${SHARD_PORTS[2]}/g" -e "s/@LISTEN@/127.0.0.1:$LB_PORT/g" \
    -e "s/@GO_LISTEN@/127.0.0.1:$GO_PORT/g" -e "s/@GO_PORT@/$GO_PORT/g" \
    "$ROOT/scripts/nginx-shards.conf.template" >"$TMP/nginx/shards.conf"
# The README's worker_connections / worker_rlimit_nofile block, as it is written.
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log info;
$(cat "$TMP/nginx-main.conf")
http {
    access_log $TMP/nginx/access.log;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    include $TMP/nginx/shards.conf;
}
EOF
start_bg nginx "$TMP/nginx/nginx.out" nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -e "$TMP/nginx/error.log"
wait_http nginx "$LAST_PID" "$LB/shard/0/-/healthy" 10 || fail "$FAIL_REASON"
! grep -E '\[(emerg|alert)\]' "$TMP/nginx/error.log" || fail "nginx complains about the README's settings"

mapfile -t a_args <"$TMP/client-a.args"
start_bg "client host-a.example" "$TMP/client-a.log" "$CLIENT_BIN" "${a_args[@]}" --fqdn host-a.example \
    --scrape.target-host 127.0.0.2 --scrape.allow "$P,$Q,$T" --scrape.tls.cacert "$TMP/ca.crt" \
    --metrics-addr "127.0.0.2:$Q" --proxy-url "$LB/" --log.level debug
say "client host-a.example: $(masked "${a_args[*]}") --fqdn host-a.example ..."
start_bg "client host-b.example" "$TMP/client-b.log" "$CLIENT_BIN" --proxy-url "$PROXY/" --label env=prod \
    --fqdn host-b.example --scrape.target-host 127.0.0.3 --metrics-addr "127.0.0.3:$Q" \
    --log.format json --log.level debug
start_bg "Go client 127.0.0.4" "$TMP/client-go.log" "$GO_CLIENT" --proxy-url="$PROXY/" --fqdn=127.0.0.4 \
    --metrics-addr="127.0.0.4:$Q"
GO_SHARD_METRICS=$(free_port 127.0.0.4) || fail "no free port"
start_bg "Go client 127.0.0.4 behind nginx" "$TMP/client-go-shards.log" "$GO_CLIENT" \
    --proxy-url="http://127.0.0.1:$GO_PORT/" --fqdn=127.0.0.4 --metrics-addr="127.0.0.4:$GO_SHARD_METRICS"
for at in "127.0.0.2:$P" "127.0.0.3:$P" "127.0.0.4:$P" "127.0.0.2:$Q" "127.0.0.3:$Q" "127.0.0.4:$Q"; do
    wait_http "exporter $at" "$LAST_PID" "http://$at/metrics" 15 || fail "$FAIL_REASON"
done
want_clients=$(printf '%s\n' 127.0.0.4 "host-a.example:$P" "host-a.example:$Q" host-b.example | sort)
got=""
for ((i = 0; i < 100; i++)); do # 10 s
    got=$(curl -sS --max-time 2 "$PROXY/clients" | python3 -c '
import json, sys
print("\n".join(sorted(t for g in json.load(sys.stdin) for t in g["targets"])))' 2>&1)
    [ "$got" = "$want_clients" ] && break
    sleep 0.1
done
[ "$got" = "$want_clients" ] || fail "/clients lists [$(one_line <<<"$got")], want [$(one_line <<<"$want_clients")]"
ok "fleet up; /clients = $(curl -sS --max-time 2 "$PROXY/clients")"

# --- the README's metric tables against the live /metrics ---------------------------------------
curl -sS --max-time 3 "$PROXY/metrics" >"$TMP/proxy-metrics.txt" || fail "GET $PROXY/metrics failed"
curl -sS --max-time 3 "http://127.0.0.2:$Q/metrics" >"$TMP/client-metrics.txt" || fail "GET client /metrics failed"
python3 - "$ROOT/README.md" "$TMP/proxy-metrics.txt" "$TMP/client-metrics.txt" <<'PY' || fail "README.md's metric tables differ from /metrics"
import re, sys
readme, proxy, client = sys.argv[1:]
text = open(readme).read()
section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
tables = re.findall(r"(?m)^\| metric \|.*\n\|[-|]+\|\n((?:\|.*\n)+)", section)
if len(tables) != 2:
    sys.exit("want two metric tables (proxy, client) under ## Metrics, found %d" % len(tables))
bad = []
for name, table, served in (("proxy", tables[0], proxy), ("client", tables[1], client)):
    documented = set()
    for row in table.splitlines():
        for m in re.findall(r"`([a-z_:]+)(?:\{[^`]*\})?`", row.split("|")[1]):
            documented.add(m)
    live = set(re.findall(r"(?m)^# TYPE (\S+) ", open(served).read()))
    for m in sorted(live - documented):
        bad.append("%s serves %s, not in the README's table" % (name, m))
    for m in sorted(documented - live):
        bad.append("the README's %s table lists %s, which %s does not serve" % (name, m, name))
if bad:
    sys.exit("\n".join(bad))
print("%d proxy and %d client metrics documented" % (len(set(re.findall(r"(?m)^# TYPE (\S+) ", open(proxy).read()))), len(set(re.findall(r"(?m)^# TYPE (\S+) ", open(client).read())))))
PY
ok "README metric tables match the live /metrics of the proxy and the client"

# --- one Prometheus per block ------------------------------------------------------------------
declare -A PROM_PORT PROM_PID
while read -r n key; do
    promtool check config "$TMP/block-$n.yml" >"$TMP/promtool-$n.log" 2>&1 ||
        fail "README block $n ($key): promtool check config: $(cat "$TMP/promtool-$n.log")"
    PROM_PORT[$n]=$(free_port) || fail "no free port"
    start_bg "prometheus block $n ($key)" "$TMP/prometheus-$n.log" prometheus \
        --config.file="$TMP/block-$n.yml" --storage.tsdb.path="$TMP/data-$n" \
        --web.listen-address="127.0.0.1:${PROM_PORT[$n]}" --log.level=debug
    PROM_PID[$n]=$LAST_PID
done <"$TMP/blocks.txt"

# targets PROM_URL: "JOB INSTANCE HEALTH LASTERROR" of every active target, sorted.
targets() {
    curl -sS --max-time 3 "$1/api/v1/targets?state=active" | python3 -c '
import json, sys
r = json.load(sys.stdin)
for t in sorted(r["data"]["activeTargets"], key=lambda t: (t["labels"]["job"], t["labels"]["instance"])):
    print(t["labels"]["job"], t["labels"]["instance"], t["health"], t["lastError"])'
}

# targets_want PROM_URL: whether its targets, kept in got, are $want.
targets_want() {
    got=$(targets "$1" 2>&1)
    [ "$got" = "$want" ]
}

while read -r n key; do
    url=http://127.0.0.1:${PROM_PORT[$n]}
    wait_http "prometheus block $n" "${PROM_PID[$n]}" "$url/-/ready" 30 || fail "$FAIL_REASON"
    want=$(expect "$key" | sort | sed 's/$/ up /')
    got=""
    retry 60 0.5 targets_want "$url" || fail "README block $n ($key): targets are [$(one_line <<<"$got")], want [$(one_line <<<"$want")]"
    ok "block $n ($key): $(cut -d' ' -f1,2 <<<"$got" | one_line) up"
done <"$TMP/blocks.txt"

# --- reasons where the operator looks (not a README block) ---------------------------------------
# A target with no client and a target slower than scrape_timeout: the proxy (and the client)
# answer before Prometheus' deadline, so its target page shows a status, not "context deadline
# exceeded".
S=$(free_port 127.0.0.3) || fail "no free port"
cat >"$TMP/slow_exporter.py" <<'PY'
import http.server, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(3)
        body = b"slow_metric 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.3", int(sys.argv[1])), Slow).serve_forever()
PY
start_bg "slow exporter 127.0.0.3:$S" "$TMP/slow_exporter.log" python3 "$TMP/slow_exporter.py" "$S"
REASONS_PORT=$(free_port) || fail "no free port"
cat >"$TMP/reasons.yml" <<EOF
global:
  scrape_interval: 2s
  scrape_timeout: 1s
scrape_configs:
  - job_name: reasons
    proxy_url: $PROXY/
    static_configs:
      - targets: ['nowhere.example:$P', 'host-b.example:$S']
EOF
start_bg "prometheus reasons" "$TMP/prometheus-reasons.log" prometheus --config.file="$TMP/reasons.yml" \
    --storage.tsdb.path="$TMP/data-reasons" --web.listen-address="127.0.0.1:$REASONS_PORT"
wait_http "prometheus reasons" "$LAST_PID" "http://127.0.0.1:$REASONS_PORT/-/ready" 30 || fail "$FAIL_REASON"
# Each line of $1 starts with the same line of $2 (the reasons end with a duration), as many.
starts_each() {
    local g w
    [ "$(wc -l <<<"$1")" = "$(wc -l <<<"$2")" ] || return 1
    while IFS= read -r g <&3 && IFS= read -r w <&4; do
        [[ "$g" == "$w"* ]] || return 1
    done 3<<<"$1" 4<<<"$2"
}
want=$(printf '%s\n' "reasons host-b.example:$S down server returned HTTP status 500 Internal Server Error: scrape of http://host-b.example:$S/metrics timed out: no complete answer within" \
    "reasons nowhere.example:$P down server returned HTTP status 504 Gateway Timeout: no client polled for nowhere.example within")
got=""
for ((i = 0; i < 40; i++)); do # 20 s
    got=$(targets "http://127.0.0.1:$REASONS_PORT" 2>&1)
    starts_each "$got" "$want" && break
    sleep 0.5
done
starts_each "$got" "$want" || fail "lastError: [$(one_line <<<"$got")], want [$(one_line <<<"$want")]"
ok "lastError: $(one_line <<<"$got")"

# A few more scrapes of every target, then Prometheus' logs must be clean of colliding series.
sleep 3
while read -r n key; do
    bad=$(grep -Ei 'out.of.order|duplicate sample|out of bounds' "$TMP/prometheus-$n.log" | head -3)
    [ -z "$bad" ] || fail "README block $n ($key): Prometheus logged: $bad"
    want=$(expect "$key" | sort | sed 's/$/ up /')
    got=$(targets "http://127.0.0.1:${PROM_PORT[$n]}" 2>&1)
    [ "$got" = "$want" ] || fail "README block $n ($key): 3 s later targets are [$(one_line <<<"$got")]"
done <"$TMP/blocks.txt"
ok "no out-of-order or duplicate samples in any Prometheus log"

# --- logs: every line logfmt (proxy, shards, host-a's client) or JSON (host-b's client) ---------
check_logfmt() { # FILE...
    python3 - "$@" <<'PY'
import re, sys
# The logfmt grammar as go-logfmt decodes it: key=value pairs separated by one space; a key is
# any run of characters above space but = and "; a value is bare (no space, =, " or control
# character) or quoted with JSON's escapes.
PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"|[^\s="\x00-\x1f]*)')
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
n = 0
for path in sys.argv[1:]:
    for no, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        keys, pos = [], 0
        while pos < len(line):
            m = PAIR.match(line, pos)
            if not m:
                sys.exit("%s:%d: not logfmt at column %d: %s" % (path, no, pos + 1, line))
            keys.append(m.group(1))
            pos = m.end()
            if pos < len(line):
                if line[pos] != " ":
                    sys.exit("%s:%d: no space after %s=: %s" % (path, no, m.group(1), line))
                pos += 1
        values = dict(m.group(1, 2) for m in PAIR.finditer(line))
        if keys[:3] != ["ts", "level", "msg"] or len(set(keys)) != len(keys):
            sys.exit("%s:%d: want ts, level, msg first and no key twice, got %s: %s" % (path, no, keys, line))
        if not TS.match(values["ts"]) or values["level"] not in ("debug", "info", "warn", "error"):
            sys.exit("%s:%d: bad ts or level: %s" % (path, no, line))
        if re.search(r'(^|[ "])(fqdn|scrape_id)=', values["msg"]):
            sys.exit("%s:%d: a field left in msg: %s" % (path, no, line))
        n += 1
print(n)
PY
}
lines=$(check_logfmt "$TMP/proxy.log" "$TMP"/shard-*.log "$TMP/client-a.log") || fail "logfmt: $lines"
ok "$lines logfmt lines of the proxies and host-a's client parse (ts, level, msg first, fields apart)"
if need jq "apt-get install jq"; then
    bad=$(jq -c 'select((.ts|type) != "string" or ((.level|IN("debug","info","warn","error"))|not)
        or (.msg|type) != "string" or (.msg|test("(^| )(fqdn|scrape_id)="))
        or (has("fqdn") and (.fqdn|type) != "string") or (has("status") and (.status|type) != "number"))' \
        "$TMP/client-b.log" 2>&1) || fail "jq could not read host-b's JSON log: $bad"
    [ -z "$bad" ] || fail "JSON log lines without ts/level/msg, with a field left in msg or mistyped: $bad"
    json_lines=$(jq -c . "$TMP/client-b.log" | wc -l)
    typed=$(jq -c 'select((.fqdn|type) == "string" and (.status|type) == "number")' "$TMP/client-b.log" | wc -l)
    [ "$json_lines" -gt 3 ] && [ "$typed" -gt 0 ] ||
        fail "host-b's JSON log has $json_lines lines, $typed with a string fqdn and a numeric status"
    ok "$json_lines JSON lines of host-b's client pass jq (ts, level, msg without fields; $typed with \"status\" a number)"
else
    fail "jq is missing"
fi

PASSED=1
PASS_DETAIL="$(wc -l <"$TMP/blocks.txt") README blocks"
