#!/usr/bin/env bash
# Shards behind an ordinary load balancer (issue 11), end to end with the real components: nginx
# (scripts/nginx-shards.conf.template, hash on X-PushProx-FQDN else the scrape's host,
# consistent) in front of three pushprox-proxy shards; 30 pushprox-clients with FQDNs
# host-01..host-30.shard.test (they need not resolve: each scrapes the one node_exporter on
# 127.0.0.1 with --scrape.target-host 127.0.0.1); two Go-like clients (a Python poll loop that
# sends no X-PushProx-FQDN) on nginx's second port; the real Prometheus scraping all of them with
# nginx as its proxy_url, scrape_interval 1s.
# It checks:
#   - a proxy-form scrape through nginx gets the target's metrics, and origin-form GET /metrics
#     through nginx gets a proxy's own; X-PushProx-Target from an untrusted address is ignored,
#     and one a client sends through the balancer is dropped there, on / and on /shard/N/;
#   - each client is listed by exactly one shard's /clients (nginx /shard/N/clients), all 30;
#   - a scrape for an FQDN no shard holds: 404 with the reason, within 3 s (each shard passes
#     it on once, nginx stops after the last);
#   - every target is up = 1 in Prometheus, the Go-like clients too (all on one shard);
#   - one proxy SIGKILLed: its clients re-poll through nginx to the next proxy on the ring and
#     all 30 targets are up = 1 again (a scrape that started after the kill succeeded) within
#     15 s; the recovery time is printed; the other shards' targets never went down (their
#     min_over_time(up) over the kill window is 1);
#   - the proxy restarted on its address (with --scrape.unknown-fqdn-wait 100ms, as the
#     templates say): its clients come back to it, how long until all targets are up again is
#     printed, and no scrape failed meanwhile (nginx retries a scrape the restarted proxy does
#     not hold yet on the next proxy of the ring, where its client still polls);
#   - rolling restart: each proxy in turn stopped with SIGTERM (exit 0), started, healthy, its
#     clients back; no scrape of Prometheus (up, scrape_samples_scraped) nor of a scrape loop
#     through nginx failed. With SHARDS_LB=haproxy the last two are printed, not checked.
#
#   scripts/shards-e2e.sh                                # builds the release binaries first
#   PUSHPROX_BIN_DIR=target/debug scripts/shards-e2e.sh  # binaries already built there
#   E2E_KEEP_TMP=1 scripts/shards-e2e.sh                 # keep the temp dir on success too
#   SHARDS_LB=haproxy scripts/shards-e2e.sh              # HAProxy instead of nginx
#                                       (scripts/haproxy-shards.cfg.template, same checks)
#
# Needs: nginx (1.22 tested) or haproxy (2.6 tested), prometheus (2.42 tested), prometheus-node-exporter, curl, python3.
# Everything listens on 127.0.0.1 (the untrusted peer is curl bound to 127.0.0.2); every wait
# is bounded; everything started is stopped on exit. About 80 s on an idle machine. Ends with "shards-e2e: PASS ..."
# or "shards-e2e: FAIL: reason", exit 0 or 1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

RECOVERY=""
RETURN=""
CLIENTS=30
# Shorter than the 50s the templates suggest, so that the return of a proxy is measured quickly.
POLL_HOLD=10s

e2e_harness
e2e_failure_extra() {
    [ -f "$TMP/error.log" ] && { echo "----- nginx error.log (last 20) -----"; tail -n 20 "$TMP/error.log"; }
}

LB_KIND=${SHARDS_LB:-nginx}
case "$LB_KIND" in nginx | haproxy) ;; *) fail "SHARDS_LB must be nginx or haproxy, not $LB_KIND" ;; esac
e2e_prelude shards "$LB_KIND"

mapfile -t PORTS < <(free_ports 8)
[ "${#PORTS[@]}" = 8 ] || fail "no free ports on 127.0.0.1"
SHARD_PORTS=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}")
LB_PORT=${PORTS[3]} GO_PORT=${PORTS[4]} PROM_PORT=${PORTS[5]} NODE_PORT=${PORTS[6]}
MISSING_PORT=${PORTS[7]}
LB=http://127.0.0.1:$LB_PORT
PROM=http://127.0.0.1:$PROM_PORT
say "temp dir $TMP; $LB_KIND $LB (Go clients :$GO_PORT), shards on :${SHARD_PORTS[*]}, node_exporter :$NODE_PORT, prometheus $PROM"

# --- target, proxies, nginx -------------------------------------------------------------------
start_bg node_exporter "$TMP/node_exporter.log" "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NODE_PORT" \
    --collector.disable-defaults --collector.loadavg --collector.meminfo
wait_http node_exporter "$LAST_PID" "http://127.0.0.1:$NODE_PORT/metrics" 15 || fail "$FAIL_REASON"

# start_shard N LOG: proxy shard N on its port, as the templates' comments say to run it.
start_shard() {
    start_bg "proxy shard $1" "$2" "$PROXY_BIN" -l "127.0.0.1:${SHARD_PORTS[$1]}" \
        --web.trusted-proxies 127.0.0.1 --poll.max-hold "$POLL_HOLD" \
        --scrape.unknown-fqdn-wait 100ms --log.level info
}
SHARD_PIDS=()
for i in 0 1 2; do
    start_shard "$i" "$TMP/proxy-$i.log"
    SHARD_PIDS+=("$LAST_PID")
done
for i in 0 1 2; do
    wait_http "proxy shard $i" "${SHARD_PIDS[$i]}" "http://127.0.0.1:${SHARD_PORTS[$i]}/-/healthy" 15 || fail "$FAIL_REASON"
done
ok "three proxies healthy"

# fill_template FILE: the template with this run's addresses.
fill_template() {
    sed -e "s/@SHARD0@/127.0.0.1:${SHARD_PORTS[0]}/g" -e "s/@SHARD1@/127.0.0.1:${SHARD_PORTS[1]}/g" \
        -e "s/@SHARD2@/127.0.0.1:${SHARD_PORTS[2]}/g" -e "s/@LISTEN@/127.0.0.1:$LB_PORT/g" \
        -e "s/@GO_LISTEN@/127.0.0.1:$GO_PORT/g" -e "s/@GO_PORT@/$GO_PORT/g" "$1"
}
if [ "$LB_KIND" = haproxy ]; then
    fill_template "$ROOT/scripts/haproxy-shards.cfg.template" >"$TMP/haproxy.cfg"
    haproxy -c -f "$TMP/haproxy.cfg" >"$TMP/haproxy-c.log" 2>&1 ||
        fail "haproxy -c: $(tail -n 3 "$TMP/haproxy-c.log")"
    start_bg haproxy "$TMP/haproxy.log" haproxy -db -f "$TMP/haproxy.cfg"
else
    fill_template "$ROOT/scripts/nginx-shards.conf.template" >"$TMP/shards.conf"
    echo "    include $TMP/shards.conf;" | nginx_conf "$TMP" 1024 >"$TMP/nginx.conf"
    nginx -t -c "$TMP/nginx.conf" -p "$TMP" -e "$TMP/error.log" >"$TMP/nginx-t.log" 2>&1 ||
        fail "nginx -t: $(tail -n 3 "$TMP/nginx-t.log")"
    start_bg nginx "$TMP/nginx.out" nginx -c "$TMP/nginx.conf" -p "$TMP" -e "$TMP/error.log"
fi
wait_http "$LB_KIND" "$LAST_PID" "$LB/shard/0/-/healthy" 10 || fail "$FAIL_REASON"
ok "$LB_KIND up"

# --- clients ------------------------------------------------------------------------------------
FQDNS=()
for ((n = 1; n <= CLIENTS; n++)); do
    f=$(printf 'host-%02d.shard.test' "$n")
    FQDNS+=("$f")
    start_bg "client $f" "$TMP/client-$f.log" "$CLIENT_BIN" --proxy-url "$LB/" --fqdn "$f" \
        --scrape.target-host 127.0.0.1 --metrics-addr 127.0.0.1:0 \
        --proxy.retry.initial-wait 200ms --proxy.retry.max-wait 1s --log.level info
done

# The Go-like client: polls without X-PushProx-FQDN, as the Go client does (POST /poll with the
# FQDN as body; the scrape request back; its response, with the Id header, POSTed to /push).
cat >"$TMP/go_client.py" <<'PY'
import http.client, sys, time, urllib.parse
host, port, fqdn, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
end = time.time() + secs
while time.time() < end:
    try:
        c = http.client.HTTPConnection(host, port, timeout=70)
        c.request("POST", "/poll", body=fqdn.encode())
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            print("poll", r.status, data[:100], flush=True)
            time.sleep(0.3)
            continue
        lines = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        url = lines[0].split(" ")[1]
        hdrs = {k.lower(): v for k, v in (l.split(": ", 1) for l in lines[1:] if ": " in l)}
        u = urllib.parse.urlsplit(url)
        t = http.client.HTTPConnection("127.0.0.1", u.port, timeout=5)
        t.request("GET", u.path + ("?" + u.query if u.query else ""))
        tr = t.getresponse()
        body = tr.read()
        push = b"HTTP/1.1 %d OK\r\nContent-Type: %s\r\nId: %s\r\nContent-Length: %d\r\n\r\n" % (
            tr.status, tr.getheader("Content-Type", "text/plain").encode(), hdrs["id"].encode(), len(body)) + body
        c.request("POST", "/push", body=push)
        pr = c.getresponse()
        pr.read()
        if pr.status != 200:
            print("push", pr.status, flush=True)
    except Exception as e:
        print("error", e, flush=True)
        time.sleep(0.3)
PY
for f in go-01.shard.test go-02.shard.test; do
    start_bg "go-like client $f" "$TMP/go-$f.log" python3 "$TMP/go_client.py" 127.0.0.1 "$GO_PORT" "$f" 170
done

# listed N: the targets of shard N's /clients through nginx, one a line, sorted.
listed() {
    curl -sS --max-time 2 "$LB/shard/$1/clients" 2>/dev/null | python3 -c '
import json, sys
print("\n".join(sorted(t for g in json.load(sys.stdin) for t in g["targets"])))' 2>/dev/null
}
say "check: each of the $CLIENTS clients and both Go-like clients is listed by exactly one shard"
want=$( (printf '%s\n' "${FQDNS[@]}" go-01.shard.test go-02.shard.test) | sort)
got=""
deadline=$((SECONDS + 30))
while [ "$SECONDS" -lt "$deadline" ]; do
    got=$( (listed 0; listed 1; listed 2) | grep . | sort)
    [ "$got" = "$want" ] && break
    sleep 0.25
done
[ "$got" = "$want" ] || fail "the shards' /clients did not list every client exactly once within 30s; got: $(one_line <<<"$got")"
declare -A SHARD_OF
for i in 0 1 2; do
    while read -r f; do [ -n "$f" ] && SHARD_OF[$f]=$i; done < <(listed "$i")
done
counts=""
for i in 0 1 2; do counts+="shard $i: $(listed "$i" | grep -c shard.test) "; done
[ "${SHARD_OF[go-01.shard.test]}" = "${SHARD_OF[go-02.shard.test]}" ] ||
    fail "the Go-like clients are on different shards (${SHARD_OF[go-01.shard.test]}, ${SHARD_OF[go-02.shard.test]})"
GO_SHARD=${SHARD_OF[go-01.shard.test]}
ok "$counts(Go-like clients on shard $GO_SHARD)"

# --- the pair nginx forwards ----------------------------------------------------------------------
say "check: proxy-form scrape through $LB_KIND gets node_exporter's metrics; GET /metrics gets a proxy's own"
code=$(curl -sS --max-time 10 -x "$LB" -o "$TMP/scrape.out" -w '%{http_code}' "http://host-01.shard.test:$NODE_PORT/metrics")
{ [ "$code" = 200 ] && grep -q '^node_load1 ' "$TMP/scrape.out"; } ||
    fail "scrape of host-01.shard.test through $LB_KIND: status $code, body: $(head -c 200 "$TMP/scrape.out")"
code=$(curl -sS --max-time 5 -o "$TMP/own.out" -w '%{http_code}' "$LB/metrics")
{ [ "$code" = 200 ] && grep -q '^pushprox_proxy_clients ' "$TMP/own.out" && ! grep -q '^node_' "$TMP/own.out"; } ||
    fail "GET $LB/metrics: status $code, want a proxy's own metrics; body: $(head -c 200 "$TMP/own.out")"
# 127.0.0.2 is not in --web.trusted-proxies: the header is ignored, the proxy answers its own.
code=$(curl -sS --max-time 5 --interface 127.0.0.2 -o "$TMP/untrusted.out" -w '%{http_code}' \
    -H "X-PushProx-Target: http://host-01.shard.test:$NODE_PORT/metrics" "http://127.0.0.1:${SHARD_PORTS[${SHARD_OF[host-01.shard.test]}]}/metrics")
{ [ "$code" = 200 ] && grep -q '^pushprox_proxy_clients ' "$TMP/untrusted.out" && ! grep -q '^node_' "$TMP/untrusted.out"; } ||
    fail "X-PushProx-Target from untrusted 127.0.0.2: status $code, want the proxy's own metrics; body: $(head -c 200 "$TMP/untrusted.out")"
# The proxies trust the balancer, so the balancer must drop an X-PushProx-Target a client sends,
# on every location: / and each /shard/N/.
for path in /metrics "/shard/${SHARD_OF[host-01.shard.test]}/metrics"; do
    code=$(curl -sS --max-time 5 -o "$TMP/forged.out" -w '%{http_code}' \
        -H "X-PushProx-Target: http://host-01.shard.test:$NODE_PORT/metrics" "$LB$path")
    { [ "$code" = 200 ] && grep -q '^pushprox_proxy_clients ' "$TMP/forged.out" && ! grep -q '^node_' "$TMP/forged.out"; } ||
        fail "X-PushProx-Target sent by a client through $LB_KIND $path: status $code, want the proxy's own metrics; body: $(head -c 200 "$TMP/forged.out")"
done
ok "scrape 200 with node_ lines; own /metrics 200; untrusted X-PushProx-Target ignored, and a client's dropped by $LB_KIND on / and /shard/N/"

say "check: a scrape for an FQDN no shard holds ends in a clear 404 at once, not in a loop"
t0=$(python3 -c 'import time; print(time.time())')
code=$(curl -sS --max-time 10 -x "$LB" -H 'X-Prometheus-Scrape-Timeout-Seconds: 5' -o "$TMP/nowhere.out" \
    -w '%{http_code}' "http://nowhere.shard.test:$NODE_PORT/metrics")
took=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
{ [ "$code" = 404 ] && grep -q 'no client polls this proxy for nowhere.shard.test' "$TMP/nowhere.out"; } ||
    fail "scrape of an FQDN no shard holds: status $code, body: $(head -c 200 "$TMP/nowhere.out")"
python3 -c "import sys; sys.exit(not ($took < 3))" || fail "scrape of an FQDN no shard holds took ${took}s, want about 0.3 s (3 shards, 100 ms each)"
ok "scrape of an FQDN no shard holds: 404 after ${took}s, each shard passed it on once"

say "check: a target's own 404 (nginx retries every 404 on the other shards; HAProxy does not)"
# The target answers 200 on / (for wait_http) and 404 on every other path.
cat >"$TMP/missing.py" <<'PY'
import http.server, sys
class Missing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/":
            self.send_response(200)
            self.end_headers()
            return
        self.send_response(404, "No Such Page")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"the target has no such page\n")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Missing).serve_forever()
PY
start_bg "404 target" "$TMP/missing.log" python3 "$TMP/missing.py" "$MISSING_PORT"
MISSING_PID=$LAST_PID
wait_http "404 target" "$MISSING_PID" "http://127.0.0.1:$MISSING_PORT/" 10 || fail "$FAIL_REASON"
code=$(curl -sS --max-time 10 -x "$LB" -H 'X-Prometheus-Scrape-Timeout-Seconds: 5' -o "$TMP/missing.out" \
    -w '%{http_code}' "http://host-01.shard.test:$MISSING_PORT/missing")
if [ "$LB_KIND" = nginx ]; then
    want='the target answered 404 itself'
else
    want='the target has no such page'
fi
{ [ "$code" = 404 ] && grep -q "$want" "$TMP/missing.out"; } ||
    fail "a target's own 404 through $LB_KIND: status $code, want 404 saying \"$want\"; body: $(head -c 300 "$TMP/missing.out")"
kill "$MISSING_PID" 2>/dev/null
ok "a target's own 404 through $LB_KIND: 404, the body says \"$want\""

# --- Prometheus -----------------------------------------------------------------------------------
targets=$(printf "'%s:$NODE_PORT', " "${FQDNS[@]}")
start_prometheus <<EOF
  - job_name: node
    proxy_url: $LB/
    static_configs:
      - targets: [${targets%, }]
  # Go clients and their scrapes share nginx's second port, hence one shard.
  - job_name: node_go
    proxy_url: http://127.0.0.1:$GO_PORT/
    static_configs:
      - targets: ['go-01.shard.test:$NODE_PORT', 'go-02.shard.test:$NODE_PORT']
EOF

# scalar_query QUERY: the single value of QUERY, or "none".
scalar_query() {
    local v
    v=$(prom_query "$PROM" "$1" 2>/dev/null | awk '{print $2}')
    echo "${v:-none}"
}
say "check: all $CLIENTS targets of job node and both of job node_go are up = 1"
got=""
deadline=$((SECONDS + 30))
while [ "$SECONDS" -lt "$deadline" ]; do
    got="$(scalar_query 'count(up{job="node"} == 1)') $(scalar_query 'count(up{job="node_go"} == 1)')"
    [ "$got" = "$CLIENTS 2" ] && break
    sleep 0.5
done
[ "$got" = "$CLIENTS 2" ] || fail "up == 1 counts (node, node_go) are [$got], want [$CLIENTS 2]"
ok "count(up == 1): node $CLIENTS, node_go 2"

# --- SIGKILL one shard ------------------------------------------------------------------------------
# The victim: the shard with most of our clients (the first of equals).
VICTIM=-1 best=-1
for i in 0 1 2; do
    c=0
    for f in "${FQDNS[@]}"; do [ "${SHARD_OF[$f]}" = "$i" ] && c=$((c + 1)); done
    [ "$c" -gt "$best" ] && VICTIM=$i best=$c
done
[ "$best" -gt 0 ] || fail "no shard holds a client"
moved=() stayed=()
for f in "${FQDNS[@]}"; do
    if [ "${SHARD_OF[$f]}" = "$VICTIM" ]; then moved+=("$f:$NODE_PORT"); else stayed+=("$f:$NODE_PORT"); fi
done
# regex HOST:PORT...: a PromQL regex matching exactly those instances (dots escaped).
regex() {
    local IFS='|' all
    all="$*"
    echo "${all//./\\\\.}"
}
sleep 3 # some history before the kill, for the range check
KILL_AT=$(python3 -c 'import time; print("%.3f" % time.time())')
disown "${SHARD_PIDS[$VICTIM]}" # no "Killed" line from bash
kill -KILL "${SHARD_PIDS[$VICTIM]}"
say "SIGKILLed shard $VICTIM (pid ${SHARD_PIDS[$VICTIM]}) holding ${#moved[@]} clients$([ "$VICTIM" = "$GO_SHARD" ] && echo " and the Go-like ones")"

# Recovered: every target's latest sample is up = 1 and was taken by a scrape that started
# after the kill.
q="count((up{job=\"node\"} == 1) and (timestamp(up{job=\"node\"}) > $KILL_AT))"
got=""
while :; do
    got=$(scalar_query "$q")
    # Taken after the answer, so the figure errs long, never short.
    now=$(python3 -c 'import time; print(time.time())')
    elapsed=$(python3 -c "print('%.1f' % ($now - $KILL_AT))")
    [ "$got" = "$CLIENTS" ] && break
    python3 -c "import sys; sys.exit($now - $KILL_AT < 15)" && fail "after 15 s only [$got] of $CLIENTS targets up = 1 since the kill; $(prom_query "$PROM" 'up{job="node"} == 0' | one_line)"
    sleep 0.25
done
RECOVERY=$elapsed
ok "all $CLIENTS targets up = 1 again ${RECOVERY}s after the kill (a scrape that started after it succeeded)"

window=$(python3 -c "import math, time; print(math.ceil(time.time() - $KILL_AT) + 2)")
fails=$(scalar_query "sum(count_over_time(up{job=\"node\",instance=~\"$(regex "${moved[@]}")\"}[${window}s])) - sum(sum_over_time(up{job=\"node\",instance=~\"$(regex "${moved[@]}")\"}[${window}s]))")
say "the moved targets had $fails failed scrapes in the last ${window}s"
if [ "${#stayed[@]}" -gt 0 ]; then
    got=$(scalar_query "count(min_over_time(up{job=\"node\",instance=~\"$(regex "${stayed[@]}")\"}[${window}s]) == 1)")
    [ "$got" = "${#stayed[@]}" ] ||
        fail "of the ${#stayed[@]} targets on the other shards only [$got] stayed up over the ${window}s since the kill"
    ok "the ${#stayed[@]} targets of the other shards stayed up = 1 over the kill window (${window}s)"
fi

say "check: the moved clients are listed by the surviving shards, the Go-like ones are still up"
got=""
deadline=$((SECONDS + 10))
while [ "$SECONDS" -lt "$deadline" ]; do
    got=$(for i in 0 1 2; do [ "$i" != "$VICTIM" ] && listed "$i"; done | grep -c shard.test)
    [ "$got" = $((CLIENTS + 2)) ] && break
    sleep 0.25
done
[ "$got" = $((CLIENTS + 2)) ] || fail "the surviving shards list $got clients, want $((CLIENTS + 2))"
got=$(scalar_query 'count(up{job="node_go"} == 1)')
[ "$got" = 2 ] || fail "after the kill count(up{job=\"node_go\"} == 1) is $got, want 2"
ok "surviving shards list all $((CLIENTS + 2)) clients; node_go up"

# --- the proxy comes back on its address -----------------------------------------------------------
# Its keys map to it again once the balancer takes it back (nginx: after fail_timeout; HAProxy:
# two passed health checks); each moved client follows when its parked poll ends (a scrape, or
# --poll.max-hold), and until then its scrapes reach a proxy it does not poll.
start_shard "$VICTIM" "$TMP/proxy-$VICTIM-again.log"
SHARD_PIDS[VICTIM]=$LAST_PID
wait_http "proxy shard $VICTIM (restarted)" "$LAST_PID" "http://127.0.0.1:${SHARD_PORTS[$VICTIM]}/-/healthy" 10 || fail "$FAIL_REASON"
BACK_AT=$(python3 -c 'import time; print("%.3f" % time.time())')
say "restarted shard $VICTIM; waiting for its ${#moved[@]} clients to come back (bounded: 60 s)"
want_back=$(printf '%s\n' "${moved[@]%:*}" | sort)
[ "$VICTIM" = "$GO_SHARD" ] && want_back=$(printf '%s\ngo-01.shard.test\ngo-02.shard.test\n' "$want_back" | sort)
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(listed "$VICTIM")" = "$want_back" ] && break
    sleep 0.25
done
[ "$(listed "$VICTIM")" = "$want_back" ] ||
    fail "60 s after the restart shard $VICTIM lists [$(listed "$VICTIM" | one_line)], want [$(one_line <<<"$want_back")]"
LISTED_AT=$(python3 -c 'import time; print("%.3f" % time.time())')
q="count((up{job=\"node\"} == 1) and (timestamp(up{job=\"node\"}) > $LISTED_AT))"
deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(scalar_query "$q")" = "$CLIENTS" ] && break
    sleep 0.25
done
[ "$(scalar_query "$q")" = "$CLIENTS" ] || fail "after the moved clients came back, not all $CLIENTS targets were up = 1 within 15 s"
RETURN=$(python3 -c "import time; print('%.1f' % (time.time() - $BACK_AT))")
window=$(python3 -c "import math, time; print(math.ceil(time.time() - $BACK_AT) + 1)")
back_fails=$(scalar_query "sum(count_over_time(up{job=\"node\",instance=~\"$(regex "${moved[@]}")\"}[${window}s])) - sum(sum_over_time(up{job=\"node\",instance=~\"$(regex "${moved[@]}")\"}[${window}s]))")
# measured: with nginx a check; with HAProxy, whose retries stay on the same server (see its
# template), a figure.
measured() { [ "$LB_KIND" = nginx ] || return 0; fail "$@"; }
# check_failures WHAT FAILED SINCE: FAILED scrapes since SINCE must all be slow ones, none the
# restarts' doing; nginx only.
check_failures() {
    [ "$LB_KIND" = nginx ] || return 0 # HAProxy's own answers are not in the logs read here
    local restart slow
    read -r restart slow < <(scrape_failure_causes "$3" host- "$TMP/access.log" "$TMP"/proxy-*.log "$TMP"/client-*.log)
    [ "$restart" = 0 ] || measured "$1: $restart scrapes failed for want of a poll or a proxy (the restarts' doing); $2 failed in all"
    [ "$2" -le "$slow" ] || measured "$1: $2 failed scrapes, and only $slow were slow ones (a busy machine)"
    [ "$slow" = 0 ] || say "$1: $slow scrapes were too slow for their 1 s timeout on this busy machine (load average $(cut -d' ' -f1 /proc/loadavg)); none failed for want of a poll or a proxy"
}
check_failures "after shard $VICTIM came back" "$back_fails" "$BACK_AT"
ok "the moved clients polled shard $VICTIM again and all $CLIENTS targets were up ${RETURN}s after its restart; their targets had $back_fails failed scrapes meanwhile"

# --- rolling restart: SIGTERM, start, healthy; one shard after the other ---------------------------
# A stopping shard answers its parked polls, and new polls and scrapes, 404 X-PushProx-Retry:
# next, which the balancer retries on the next shard of the ring (where the clients' polls then
# are); a shard that comes back passes on the scrapes of FQDNs it does not hold yet.
cat >"$TMP/scrape_loop.py" <<'PY'
import http.client, os, sys, time
lb_port, node_port, stop, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
fqdns = sys.argv[5:]
end, n, failed, c = time.time() + secs, 0, [], None
while time.time() < end and not os.path.exists(stop):
    fqdn = fqdns[n % len(fqdns)]
    n += 1
    try:
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", lb_port, timeout=3)
        c.request("GET", "http://%s:%s/metrics" % (fqdn, node_port),
                  headers={"Host": "%s:%s" % (fqdn, node_port), "X-Prometheus-Scrape-Timeout-Seconds": "1"})
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or b"node_load1 " not in body:
            failed.append("%.1f %s %d %s" % (time.time(), fqdn, r.status, body[:120]))
    except Exception as e:
        failed.append("%.1f %s error %s" % (time.time(), fqdn, e))
        c = None
    time.sleep(0.1)
print("scrapes=%d failed=%d" % (n, len(failed)))
for f in failed[:10]:
    print(f)
PY
sleep 2 # the clients of the last phase settled
ROLL_AT=$(python3 -c 'import time; print("%.3f" % time.time())')
start_bg "scrape loop" "$TMP/scrape_loop.out" python3 "$TMP/scrape_loop.py" "$LB_PORT" "$NODE_PORT" "$TMP/scrape_loop.stop" 180 "${FQDNS[@]}"
LOOP_PID=$LAST_PID
STOPS="" BACKS=""
# What each shard held at the start (/clients lists the clients seen within
# --registration.timeout, so a shard that took clients over lists them for a while).
HELD=()
for i in 0 1 2; do
    HELD+=("$(for f in "${!SHARD_OF[@]}"; do [ "${SHARD_OF[$f]}" = "$i" ] && echo "$f"; done | sort)")
done
for i in 0 1 2; do
    sleep 2
    t0=$(python3 -c 'import time; print(time.time())')
    kill -TERM "${SHARD_PIDS[$i]}"
    for ((n = 0; n < 200; n++)); do alive "${SHARD_PIDS[$i]}" || break; sleep 0.1; done
    alive "${SHARD_PIDS[$i]}" && fail "shard $i still runs 20 s after SIGTERM"
    wait "${SHARD_PIDS[$i]}"
    rc=$?
    [ "$rc" = 0 ] || fail "shard $i exited $rc after SIGTERM, want 0"
    STOPS+="$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")s "
    start_shard "$i" "$TMP/proxy-$i-rolled.log"
    SHARD_PIDS[i]=$LAST_PID
    wait_http "proxy shard $i (rolled)" "$LAST_PID" "http://127.0.0.1:${SHARD_PORTS[$i]}/-/healthy" 10 || fail "$FAIL_REASON"
    # Back in service: the balancer sends its clients back to it (nginx: after fail_timeout,
    # as the stopped shard refused connections). Only then the next one, or nginx would have
    # every shard marked failed at once.
    for ((n = 0; n < 160; n++)); do [ "$(listed "$i")" = "${HELD[$i]}" ] && break; sleep 0.25; done
    [ "$(listed "$i")" = "${HELD[$i]}" ] ||
        fail "40 s after its restart shard $i lists [$(listed "$i" | one_line)], want [$(one_line <<<"${HELD[$i]}")]"
    BACKS+="$(python3 -c "import time; print('%.1f' % (time.time() - $t0))")s "
done
sleep 3 # the last restart's scrapes in Prometheus
touch "$TMP/scrape_loop.stop"
for ((n = 0; n < 50; n++)); do alive "$LOOP_PID" || break; sleep 0.1; done
window=$(python3 -c "import math, time; print(math.ceil(time.time() - $ROLL_AT))")
roll_total=$(scalar_query "sum(count_over_time(up{job=\"node\"}[${window}s]))")
roll_fails=$(scalar_query "sum(count_over_time(up{job=\"node\"}[${window}s])) - sum(sum_over_time(up{job=\"node\"}[${window}s]))")
# Every scrape of the window brought samples: the least of each target is above 0.
roll_samples=$(scalar_query "count(min_over_time(scrape_samples_scraped{job=\"node\"}[${window}s]) > 0)")
go_fails=$(scalar_query "sum(count_over_time(up{job=\"node_go\"}[${window}s])) - sum(sum_over_time(up{job=\"node_go\"}[${window}s]))")
loop=$(head -n 1 "$TMP/scrape_loop.out")
say "rolling restart over ${window}s (each shard stopped in ${STOPS% }, held its clients again ${BACKS% } after its SIGTERM): Prometheus $roll_fails failed of $roll_total scrapes (job node), $go_fails failed (Go-like clients); scrape loop: $loop"
# Prometheus scraped on: about one scrape per target and second (a stalled scraper must not pass).
python3 -c "import sys; sys.exit(not ($roll_total >= 0.7 * $window * $CLIENTS))" ||
    fail "Prometheus made $roll_total scrapes of job node in ${window}s, want about $((window * CLIENTS))"
loop_fails=${loop##*failed=}
check_failures "rolling restart" $((roll_fails + loop_fails)) "$ROLL_AT"
# Each target's every scrape brought samples, unless some were too slow (checked above).
[ "$roll_samples" = "$CLIENTS" ] || [ "$roll_fails" != 0 ] ||
    measured "rolling restart: only [$roll_samples] of $CLIENTS targets had samples in every scrape, yet up was 1 throughout"
ok "rolling restart of the 3 shards (SIGTERM, start, healthy): $roll_fails failed of $roll_total Prometheus scrapes; scrape loop: $loop"
PASS_DETAIL="$LB_KIND, $CLIENTS clients on 3 shards; all up again ${RECOVERY}s after SIGKILL of a shard, ${RETURN}s after its restart with $back_fails failed; rolling restart $roll_fails failed of $roll_total"
PASSED=1
