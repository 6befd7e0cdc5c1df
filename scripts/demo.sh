#!/usr/bin/env bash
# A tour of pushprox-rs on this machine, in about a minute: starts a proxy and one client on free
# loopback ports, scrapes a target through them with curl, shows what the proxy knows, and, when
# Prometheus is installed, lets a real Prometheus scrape the target through the proxy.
#
#   scripts/demo.sh           # builds the release binaries (cargo build --release) and runs the tour
#   scripts/demo.sh --keep    # the same, then keeps everything running until Ctrl-C
#   PUSHPROX_BIN_DIR=target/debug scripts/demo.sh    # use binaries already built there
#
# The target is node_exporter when one is installed (Debian: prometheus-node-exporter), otherwise
# the client's own /metrics, so the tour needs nothing but Rust, curl and python3. Everything runs
# on 127.0.0.1 and is stopped when the script ends.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

KEEP=0
script_flag --keep "$@" && KEEP=1

TMP=""
OK=0

step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; } # a command as the reader would type it

finish() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [ "$OK" = 1 ]; then
        rm -rf "$TMP"
        printf '\nAll stopped.\n'
        exit 0
    fi
    [ -n "$TMP" ] && dump_logs && echo "(logs kept in $TMP)"
    echo "demo failed: ${FAIL_REASON:-exit code $rc}" >&2
    exit 1
}
trap finish EXIT
# With --keep, Ctrl-C is the normal way out.
trap '[ "$KEEP" = 1 ] && [ "$OK" = 1 ] && exit 0; FAIL_REASON="interrupted"; exit 1' INT TERM

need curl || fail "curl is missing"
need python3 || fail "python3 is missing"
pushprox_bins || fail "no pushprox binaries"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pushprox-demo.XXXXXX")

mapfile -t PORTS < <(free_ports 4)
[ "${#PORTS[@]}" = 4 ] || fail "no free ports on 127.0.0.1"
PROXY_PORT=${PORTS[0]} CLIENT_PORT=${PORTS[1]} PROM_PORT=${PORTS[2]} NODE_PORT=${PORTS[3]}
PROXY=http://127.0.0.1:$PROXY_PORT
FQDN=127.0.0.1

step "Starting the proxy on $PROXY"
show "$(basename "$PROXY_BIN") --web.listen-address 127.0.0.1:$PROXY_PORT"
start_bg proxy "$TMP/proxy.log" "$PROXY_BIN" --web.listen-address "127.0.0.1:$PROXY_PORT"
wait_http proxy "$LAST_PID" "$PROXY/-/healthy" 15 || fail "$FAIL_REASON"
echo "ready: $PROXY/-/healthy answers 200"

if NODE_EXPORTER=$(first_command prometheus-node-exporter node_exporter); then
    TARGET=$FQDN:$NODE_PORT
    step "Starting a target: node_exporter on $TARGET"
    start_bg node_exporter "$TMP/node_exporter.log" "$NODE_EXPORTER" --web.listen-address="$TARGET"
    wait_http node_exporter "$LAST_PID" "http://$TARGET/metrics" 15 || fail "$FAIL_REASON"
else
    TARGET=$FQDN:$CLIENT_PORT
    step "No node_exporter installed: the target is the client's own metrics on $TARGET"
fi

step "Starting a client for host $FQDN: it polls the proxy and scrapes targets on $FQDN"
show "$(basename "$CLIENT_BIN") --proxy-url $PROXY/ --fqdn $FQDN --metrics-addr 127.0.0.1:$CLIENT_PORT"
start_bg client "$TMP/client.log" "$CLIENT_BIN" --proxy-url "$PROXY/" --fqdn "$FQDN" \
    --metrics-addr "127.0.0.1:$CLIENT_PORT"
wait_http client "$LAST_PID" "http://127.0.0.1:$CLIENT_PORT/-/healthy" 15 || fail "$FAIL_REASON"

# The client is known to the proxy from its first poll on.
for ((i = 0; i < 100; i++)); do # 10 s
    curl -sS --max-time 2 "$PROXY/clients" 2>/dev/null | grep -q "\"$FQDN\"" && break
    sleep 0.1
done

step "The proxy's service discovery: the clients it knows"
show "curl -s $PROXY/clients"
clients=$(curl -sS --max-time 5 "$PROXY/clients") || fail "GET /clients failed"
echo "$clients"

step "A scrape through the proxy, as Prometheus does it (proxy_url)"
# node_exporter starts with Go runtime metrics; its own say more.
pick="head"
[ -n "${NODE_EXPORTER:-}" ] && pick="grep ^node_ | head"
show "curl -s -x $PROXY http://$TARGET/metrics | $pick"
code=$(curl -sS --max-time 10 -x "$PROXY" -o "$TMP/scrape.out" -w '%{http_code}' \
    "http://$TARGET/metrics") || fail "curl through the proxy failed"
sh -c "$pick" <"$TMP/scrape.out"
echo "... $(wc -l <"$TMP/scrape.out") lines, HTTP status $code"
[ "$code" = 200 ] || fail "the scrape through the proxy answered $code"

if command -v prometheus >/dev/null 2>&1; then
    PROM=http://127.0.0.1:$PROM_PORT
    step "Prometheus scraping $TARGET through the proxy, on $PROM"
    cat >"$TMP/prometheus.yml" <<EOF
scrape_configs:
  - job_name: demo
    scrape_interval: 1s
    scrape_timeout: 1s
    proxy_url: $PROXY/       # the only line that PushProx adds to a scrape config
    static_configs:
      - targets: ['$TARGET']
EOF
    sed 's/^/    /' "$TMP/prometheus.yml"
    start_bg prometheus "$TMP/prometheus.log" prometheus --config.file="$TMP/prometheus.yml" \
        --storage.tsdb.path="$TMP/data" --web.listen-address="127.0.0.1:$PROM_PORT"
    wait_http prometheus "$LAST_PID" "$PROM/-/ready" 30 || fail "$FAIL_REASON"
    got=""
    for ((i = 0; i < 60; i++)); do # 30 s
        got=$(prom_query "$PROM" 'up{job="demo"}' 2>&1)
        [ "$got" = "$TARGET 1" ] && break
        sleep 0.5
    done
    show "curl -s '$PROM/api/v1/query?query=up'"
    echo "up{instance=\"${got% *}\", job=\"demo\"} = ${got##* }"
    [ "$got" = "$TARGET 1" ] || fail "Prometheus did not see the target up within 30 s"
else
    step "Prometheus is not installed: skipping the Prometheus part (Debian: apt-get install prometheus)"
fi

OK=1
if [ "$KEEP" = 1 ]; then
    step "Everything keeps running until Ctrl-C:"
    echo "  proxy       $PROXY   (/clients, /metrics)"
    echo "  client      http://127.0.0.1:$CLIENT_PORT/metrics   fqdn $FQDN"
    echo "  target      http://$TARGET/metrics"
    [ -n "${PROM:-}" ] && echo "  prometheus  $PROM"
    echo "  logs        $TMP"
    echo "Try: curl -s -x $PROXY http://$TARGET/metrics | head"
    while :; do
        for i in "${!PIDS[@]}"; do
            alive "${PIDS[$i]}" || { OK=0; fail "${NAMES[$i]} exited"; }
        done
        sleep 1
    done
fi
