#!/usr/bin/env bash
# A picture of the proxy's landing page (GET /) as a browser renders it, for the README and
# for reviewing changes to proxy/src/handlers/index.rs. Starts a proxy and two clients
# (--fqdn 127.0.0.2 and 127.0.0.3, each with a python3 http.server as its target) on loopback,
# scrapes through the proxy with curl so the counts are not zero, then has headless Chromium
# take the screenshot and dump the rendered DOM, which must list both clients.
#
#   scripts/screenshot.sh                      # builds (cargo build), writes target/screenshot/landing.png
#   scripts/screenshot.sh /tmp/landing.png     # another output path
#   PUSHPROX_BIN_DIR=target/release scripts/screenshot.sh    # use binaries already built there
#
# Needs Debian's chromium (apt-get install chromium), curl and python3. Exits non-zero when
# something does not start, a scrape fails, Chromium fails, or the DOM lacks a client.
# Everything runs on 127.0.0.0/8 and is stopped when the script ends.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

OUT=${1:-$ROOT/target/screenshot/landing.png}
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
HOSTS=(127.0.0.2 127.0.0.3)
TMP=""

finish() {
    local rc=$?
    stop_all
    if [ "$rc" != 0 ]; then
        printf '%s: FAILED: %s\n' "$SCRIPT" "${FAIL_REASON:-see above}" >&2
        dump_logs >&2
    fi
    [ -n "$TMP" ] && rm -rf "$TMP"
    exit "$rc"
}
need chromium "apt-get install chromium" || exit 1
need curl "apt-get install curl" || exit 1
need python3 "apt-get install python3" || exit 1

if [ -n "${PUSHPROX_BIN_DIR:-}" ]; then
    BIN_DIR=$PUSHPROX_BIN_DIR
else
    need cargo "install Rust with rustup, or set PUSHPROX_BIN_DIR" || exit 1
    say "building (cargo build)"
    (cd "$ROOT" && cargo build -q --bin pushprox-proxy --bin pushprox-client) || exit 1
    BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/debug
fi
for b in pushprox-proxy pushprox-client; do
    [ -x "$BIN_DIR/$b" ] || { echo "$SCRIPT: $BIN_DIR/$b is missing or not executable" >&2; exit 1; }
done

TMP=$(mktemp -d)
trap finish EXIT
trap 'exit 130' INT TERM

PROXY_PORT=$(free_port) || fail "no free port"
PROXY=http://127.0.0.1:$PROXY_PORT
start_bg proxy "$TMP/proxy.log" "$BIN_DIR/pushprox-proxy" -l "127.0.0.1:$PROXY_PORT"
wait_http proxy "$LAST_PID" "$PROXY/-/healthy" 10 || exit 1

# Each client's target must listen on the client's FQDN: the client scrapes http://FQDN:PORT.
mkdir -p "$TMP/www"
printf '# HELP demo_up Always 1.\n# TYPE demo_up gauge\ndemo_up 1\n' >"$TMP/www/metrics"
TARGETS=()
for h in "${HOSTS[@]}"; do
    tport=$(free_port "$h") || fail "no free port on $h"
    start_bg "target-$h" "$TMP/target-$h.log" python3 -m http.server --bind "$h" --directory "$TMP/www" "$tport"
    wait_http "target-$h" "$LAST_PID" "http://$h:$tport/metrics" 10 || exit 1
    TARGETS+=("http://$h:$tport/metrics")
    mport=$(free_port) || fail "no free port"
    start_bg "client-$h" "$TMP/client-$h.log" "$BIN_DIR/pushprox-client" --proxy-url "$PROXY/" \
        --fqdn "$h" --metrics-addr "127.0.0.1:$mport" --proxy.retry.initial-wait 100ms
    wait_http "client-$h" "$LAST_PID" "http://127.0.0.1:$mport/-/healthy" 10 || exit 1
done

deadline=$((SECONDS + 10))
until clients=$(curl -sS --max-time 2 "$PROXY/clients") &&
    grep -qF '"127.0.0.2"' <<<"$clients" && grep -qF '"127.0.0.3"' <<<"$clients"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the proxy did not list both clients within 10 s: ${clients:-no answer}"
    sleep 0.1
done

# Three scrapes of the first client, two of the second: different counts on the page.
for i in 0 0 0 1 1; do
    url=${TARGETS[$i]}
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -x "$PROXY" \
        -H 'X-Prometheus-Scrape-Timeout-Seconds: 5' "$url") || true
    [ "$code" = 200 ] || fail "scrape of $url through the proxy answered ${code:-nothing}"
done
say "5 scrapes relayed through $PROXY"

# Fresh profile, no network beyond the page: nothing of the host's leaks in, no downloads.
chrome() {
    timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d -p "$TMP")" "$@"
}
mkdir -p "$(dirname "$OUT")" || fail "cannot create $(dirname "$OUT")"
rm -f "$OUT"
chrome --screenshot="$OUT" --window-size=1000,600 "$PROXY/" >"$TMP/chromium.log" 2>&1 ||
    { cat "$TMP/chromium.log" >&2; fail "chromium --screenshot failed"; }
[ "$(head -c 4 "$OUT" 2>/dev/null | od -An -c | tr -d ' ')" = '211PNG' ] ||
    { cat "$TMP/chromium.log" >&2; fail "chromium wrote no PNG to $OUT"; }
chrome --dump-dom "$PROXY/" >"$TMP/dom.html" 2>"$TMP/chromium-dom.log" ||
    { cat "$TMP/chromium-dom.log" >&2; fail "chromium --dump-dom failed"; }
for h in "${HOSTS[@]}"; do
    grep -qF "<td>$h</td>" "$TMP/dom.html" ||
        { cat "$TMP/dom.html" >&2; fail "the rendered page does not list client $h"; }
done
say "the rendered page lists ${HOSTS[*]}; screenshot: $OUT ($(wc -c <"$OUT") bytes)"
