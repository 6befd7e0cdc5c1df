#!/usr/bin/env bash
# Restarts with the real components, the figures the README's upgrade section gives; a
# release-time companion of scripts/shards-e2e.sh (which restarts shards behind nginx in CI).
# Prometheus (scrape_interval 1s) scrapes node_exporter through the proxies for 10 of our
# clients (default retry flags) and one Go v0.2.0 client (FQDN localhost; from
# PUSHPROX_GO_BIN_DIR, else target/go-pushprox/, built there as scripts/readme-e2e.sh does):
#   - single proxy: SIGTERM, then started again on its address once it exited. Printed: how
#     long it took to stop, the gap until the new one listened, when every client polled it
#     again, failed scrapes of ours and of the Go client. Checked: each of our clients polls
#     the new proxy within 1.5 s of its listening (our target: 1 s; margin for a busy machine).
#   - HA pair: two proxies, our clients with two --proxy-url, Prometheus through nginx
#     (round robin, proxy_next_upstream http_404); each proxy restarted in turn (SIGTERM,
#     start, healthy, clients back, nginx's fail_timeout passed). Checked: 0 failed scrapes of our clients, but for scrapes
#     too slow for their timeout on a busy machine, which the logs tell apart.
#
#   scripts/rolling-restart.sh                                # builds the release binaries first
#   PUSHPROX_BIN_DIR=target/debug scripts/rolling-restart.sh  # binaries already built there
#
# Needs: nginx, prometheus, prometheus-node-exporter, curl, python3; Go to build the Go client.
# Everything listens on 127.0.0.1; every wait is bounded; everything started is stopped on exit.
# About 90 s. Ends with "rolling-restart: PASS ..." or "rolling-restart: FAIL: reason".
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

CLIENTS=10
e2e_harness
e2e_prelude rolling nginx
go_pushprox_bins
mapfile -t PORTS < <(free_ports 6)
[ "${#PORTS[@]}" = 6 ] || fail "no free ports on 127.0.0.1"
P1=${PORTS[0]} P2=${PORTS[1]} LB_PORT=${PORTS[2]} PROM_PORT=${PORTS[3]} NODE_PORT=${PORTS[4]} GO_METRICS=${PORTS[5]}
PROM=http://127.0.0.1:$PROM_PORT
now() { python3 -c 'import time; print("%.3f" % time.time())'; }
since() { python3 -c "import time; print('%.2f' % (time.time() - $1))"; }
scalar_query() {
    local v
    v=$(prom_query "$PROM" "$1" 2>/dev/null | awk '{print $2}')
    echo "${v:-none}"
}
# failed JOB SINCE: failed scrapes of JOB since the epoch time SINCE.
failed() {
    local w
    w=$(python3 -c "import math, time; print(math.ceil(time.time() - $2) + 1)")
    scalar_query "sum(count_over_time(up{job=\"$1\"}[${w}s])) - sum(sum_over_time(up{job=\"$1\"}[${w}s]))"
}
# listed PORT: the FQDNs in that proxy's /clients, sorted, one a line.
listed() {
    curl -sS --max-time 2 "http://127.0.0.1:$1/clients" 2>/dev/null | python3 -c '
import json, sys
print("\n".join(sorted(t for g in json.load(sys.stdin) for t in g["targets"])))' 2>/dev/null
}
start_proxy() { # N PORT LOG [FLAGS...]
    start_bg "proxy $1" "$3" "$PROXY_BIN" -l "127.0.0.1:$2" --log.level info "${@:4}"
    PROXY_PID[$1]=$LAST_PID
    wait_http "proxy $1" "$LAST_PID" "http://127.0.0.1:$2/-/healthy" 10 || fail "$FAIL_REASON"
}
# stop_proxy N: SIGTERM, then its exit (bounded), which must be 0.
stop_proxy() {
    local pid=${PROXY_PID[$1]} n
    kill -TERM "$pid"
    for ((n = 0; n < 200; n++)); do alive "$pid" || break; sleep 0.05; done
    alive "$pid" && fail "proxy $1 still runs 10 s after SIGTERM"
    wait "$pid"
    local rc=$?
    [ "$rc" = 0 ] || fail "proxy $1 exited $rc after SIGTERM, want 0"
}
declare -A PROXY_PID

start_bg node_exporter "$TMP/node_exporter.log" "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NODE_PORT" \
    --collector.disable-defaults --collector.loadavg
wait_http node_exporter "$LAST_PID" "http://127.0.0.1:$NODE_PORT/metrics" 15 || fail "$FAIL_REASON"

# --- single proxy ---------------------------------------------------------------------------------
start_proxy 1 "$P1" "$TMP/single-1.log"
FQDNS=()
for ((n = 1; n <= CLIENTS; n++)); do
    f=$(printf 'host-%02d.rolling.test' "$n")
    FQDNS+=("$f")
    start_bg "client $f" "$TMP/client-$f.log" "$CLIENT_BIN" --proxy-url "http://127.0.0.1:$P1/" --fqdn "$f" \
        --scrape.target-host 127.0.0.1 --metrics-addr 127.0.0.1:0 --log.level info
done
start_bg "Go client" "$TMP/go-client.log" "$GO_CLIENT" --proxy-url "http://127.0.0.1:$P1/" \
    --fqdn localhost --metrics-addr "127.0.0.1:$GO_METRICS"
targets=$(printf "'%s:$NODE_PORT', " "${FQDNS[@]}")
write_prometheus() { # PROXY_URL
    cat >"$TMP/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: ours
    proxy_url: $1
    static_configs: [{targets: [${targets%, }]}]
  - job_name: go
    proxy_url: $1
    static_configs: [{targets: ['localhost:$NODE_PORT']}]
EOF
}
write_prometheus "http://127.0.0.1:$P1/"
start_bg prometheus "$TMP/prometheus.log" prometheus --config.file="$TMP/prometheus.yml" \
    --storage.tsdb.path="$TMP/data" --web.listen-address="127.0.0.1:$PROM_PORT"
PROM_PID=$LAST_PID
wait_http prometheus "$LAST_PID" "$PROM/-/ready" 30 || fail "$FAIL_REASON"
wait_query "count(up == 1)" "- $((CLIENTS + 1))" 30
ok "single proxy: $CLIENTS of our clients and the Go client up"
sleep 2

want_ours=$(printf '%s\n' "${FQDNS[@]}" | sort)
T0=$(now)
stop_proxy 1
STOP=$(since "$T0")
T1=$(now)
start_proxy 1 "$P1" "$TMP/single-1-again.log"
LISTEN=$(since "$T1")
T2=$(now)
OURS_BACK="" GO_BACK=""
for ((n = 0; n < 200; n++)); do
    got=$(listed "$P1")
    [ -z "$OURS_BACK" ] && [ "$(grep -v '^localhost$' <<<"$got")" = "$want_ours" ] && OURS_BACK=$(since "$T2")
    [ -z "$GO_BACK" ] && grep -qx localhost <<<"$got" && GO_BACK=$(since "$T2")
    [ -n "$OURS_BACK" ] && [ -n "$GO_BACK" ] && break
    sleep 0.05
done
[ -n "$OURS_BACK" ] || fail "single proxy: our clients did not all poll the restarted proxy within 10 s"
sleep 4
single_ours=$(failed ours "$T0") single_go=$(failed go "$T0")
say "single proxy: stopped ${STOP}s after SIGTERM, listening again ${LISTEN}s after its exit; our clients back ${OURS_BACK}s after that, the Go client ${GO_BACK:-not within 10 }s; failed scrapes: ours $single_ours of $CLIENTS targets, Go $single_go"
python3 -c "import sys; sys.exit(not ($OURS_BACK <= 1.5))" ||
    fail "single proxy: our clients polled the restarted proxy ${OURS_BACK}s after it listened, want within 1 s (1.5 s with margin)"
ok "single proxy restarted: our clients back ${OURS_BACK}s after it listened"

# --- HA pair ----------------------------------------------------------------------------------------
# Our clients poll both proxies; Prometheus scrapes through nginx, round robin over the two.
start_proxy 2 "$P2" "$TMP/ha-2.log"
for ((n = 1; n <= CLIENTS; n++)); do
    f=$(printf 'ha-%02d.rolling.test' "$n")
    start_bg "client $f" "$TMP/client-$f.log" "$CLIENT_BIN" --proxy-url "http://127.0.0.1:$P1/" \
        --proxy-url "http://127.0.0.1:$P2/" --fqdn "$f" --scrape.target-host 127.0.0.1 --metrics-addr 127.0.0.1:0
done
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log info;
events { worker_connections 256; }
http {
    access_log $TMP/nginx/access.log;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream pair { server 127.0.0.1:$P1 max_fails=1 fail_timeout=5s; server 127.0.0.1:$P2 max_fails=1 fail_timeout=5s; keepalive 16; }
    map \$request \$pushprox_target { "~^[A-Z]+ [hH][tT][tT][pP][sS]?://" "http://\$http_host\$request_uri"; default ""; }
    server {
        listen 127.0.0.1:$LB_PORT;
        location / {
            proxy_pass http://pair;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-PushProx-Target \$pushprox_target;
            proxy_next_upstream error timeout http_404;
            proxy_buffering off;
        }
    }
}
EOF
start_bg nginx "$TMP/nginx.out" nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -e "$TMP/nginx/error.log"
wait_http nginx "$LAST_PID" "http://127.0.0.1:$LB_PORT/-/healthy" 10 || fail "$FAIL_REASON"
# The pair's proxies believe nginx's X-PushProx-Target: started again with the flag.
for i in 1 2; do
    port=$P1
    [ "$i" = 2 ] && port=$P2
    stop_proxy "$i"
    start_proxy "$i" "$port" "$TMP/ha-$i.log" --web.trusted-proxies 127.0.0.1
done
ha_targets=$(for ((n = 1; n <= CLIENTS; n++)); do printf "'ha-%02d.rolling.test:$NODE_PORT', " "$n"; done)
cat >>"$TMP/prometheus.yml" <<EOF
  - job_name: ha
    proxy_url: http://127.0.0.1:$LB_PORT/
    static_configs: [{targets: [${ha_targets%, }]}]
EOF
kill -HUP "$PROM_PID"
want_ha=$(for ((n = 1; n <= CLIENTS; n++)); do printf 'ha-%02d.rolling.test\n' "$n"; done)
for ((n = 0; n < 200; n++)); do
    [ "$(listed "$P1" | grep '^ha-')" = "$want_ha" ] && [ "$(listed "$P2" | grep '^ha-')" = "$want_ha" ] && break
    sleep 0.1
done
wait_query 'count(up{job="ha"} == 1)' "- $CLIENTS" 30
ok "HA pair: $CLIENTS clients poll both proxies, up through nginx"
sleep 3
T0=$(now)
for i in 1 2; do
    port=$P1
    [ "$i" = 2 ] && port=$P2
    stop_proxy "$i"
    start_proxy "$i" "$port" "$TMP/ha-$i-again.log" --web.trusted-proxies 127.0.0.1
    for ((n = 0; n < 200; n++)); do [ "$(listed "$port" | grep '^ha-')" = "$want_ha" ] && break; sleep 0.05; done
    [ "$(listed "$port" | grep '^ha-')" = "$want_ha" ] || fail "HA pair: the clients did not poll proxy $i again within 10 s"
    # nginx takes a proxy it found down (a request met it stopped) back after fail_timeout:
    # only then the other, or nginx has both marked down at once ("no live upstreams").
    sleep 5.5
done
sleep 3
ha_total=$(python3 -c "import math, time; print(math.ceil(time.time() - $T0) + 1)")
ha_total=$(scalar_query "sum(count_over_time(up{job=\"ha\"}[${ha_total}s]))")
ha_failed=$(failed ha "$T0")
say "HA pair, each proxy restarted in turn: $ha_failed failed of $ha_total scrapes"
# A scrape too slow for its 1 s timeout on a busy machine is no restart's doing.
read -r restart slow < <(scrape_failure_causes "$T0" ha- "$TMP/nginx/access.log" "$TMP"/ha-*.log "$TMP"/client-ha-*.log)
[ "$restart" = 0 ] || fail "HA pair: $restart scrapes failed for want of a poll or a proxy; $ha_failed failed in all"
[ "$ha_failed" -le "$slow" ] || fail "HA pair: $ha_failed failed scrapes, only $slow of them too slow (a busy machine), want 0"
[ "$slow" = 0 ] || say "HA pair: $slow scrapes were too slow for their 1 s timeout on this busy machine; none failed for want of a poll or a proxy"
ok "HA pair: $ha_failed failed of $ha_total scrapes through two rolling restarts, none for want of a poll or a proxy"
PASS_DETAIL="single proxy: gap ${LISTEN}s, ours back +${OURS_BACK}s, Go +${GO_BACK:-?}s, failed ours $single_ours Go $single_go; HA pair 0 failed of $ha_total"
PASSED=1
