#!/usr/bin/env bash
# Wrong passwords against right ones (issue 16, "password checks"): prints how long a correct,
# uncached login takes while one address floods the proxy with a wrong password over kept-alive
# TLS connections, and whether a scraper whose login is cached ever fails meanwhile.
#
#   scripts/abuse-bench.sh                                  # builds the release binaries first
#   PUSHPROX_BIN_DIR=target/release scripts/abuse-bench.sh  # binaries built elsewhere (or older)
#   FLOOD_CONNECTIONS=150 FLOOD_SECONDS=20 scripts/abuse-bench.sh
#
#   REGISTRY_CLIENTS=10000 scripts/abuse-bench.sh             # size of the large registry
#
# Then the other two figures of issue 16 with the same binaries, through the tests that assert
# their bounds (cargo test, --nocapture): the proxy's peak memory while six readers fetch
# /clients of 300 and of REGISTRY_CLIENTS (10,000) clients with the largest announcements the
# limits allow, and the client's threads and peak memory under a proxy that hands out slow
# scrapes as fast as it can poll.
#
# Needs: curl (7.66 or later, for --parallel), openssl, python3, cargo; htpasswd (apache2-utils)
# if present, else the proxy's --hash-password.
#
# All on loopback: the proxy serves TLS with basic_auth_users (bcrypt, cost 10, the README's
# internet setup); one pushprox-client polls it, and scrapes of it go to the client's own
# /metrics. Then, from 127.0.0.2, one curl keeps FLOOD_CONNECTIONS (150) kept-alive TLS
# connections busy with scrapes carrying prom:wrong (a closed loop: each sends its next request
# as soon as the answer came). From 127.0.0.1 meanwhile: a scraper with a cached login scrapes
# every 0.5 s, and five logins of users never seen before are timed one after the other.
# Prints the figures; exits 1 only when the setup fails (figures are not asserted here; the test
# web_config.rs "a_wrong_password_flood_does_not_starve_right_ones" asserts bounds).
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_harness

FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-150}
FLOOD_SECONDS=${FLOOD_SECONDS:-20}
need curl || fail "curl is missing"
need openssl || fail "openssl is missing"
need python3 || fail "python3 is missing"
pushprox_bins || fail "no pushprox binaries"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pushprox-abuse-bench.XXXXXX")
mapfile -t PORTS < <(free_ports 2)
PROXY_PORT=${PORTS[0]} CLIENT_METRICS=${PORTS[1]}
PROXY=https://127.0.0.1:$PROXY_PORT

# --- certificate and users ------------------------------------------------------------------------
ssl_ca ca "abuse-bench CA"
ssl_signed ca proxy 127.0.0.1 IP:127.0.0.1 serverAuth
{
    echo "tls_server_config:"
    echo "  cert_file: proxy.crt"
    echo "  key_file: proxy.key"
    echo "basic_auth_users:"
    echo "  prom: $(bcrypt_hash prom right-password)"
    for i in 1 2 3 4 5; do echo "  probe$i: $(bcrypt_hash "probe$i" "probe-password-$i")"; done
} >"$TMP/web.yml"
ok "certificate and 6 bcrypt users"

start_bg proxy "$TMP/proxy.log" "$PROXY_BIN" -l "127.0.0.1:$PROXY_PORT" --web.config.file "$TMP/web.yml"
PROXY_PID=$LAST_PID
start_bg client "$TMP/client.log" "$CLIENT_BIN" --proxy-url "$PROXY/" --tls.cacert "$TMP/ca.crt" \
    --fqdn flood.example --scrape.target-host 127.0.0.1 --metrics-addr "127.0.0.1:$CLIENT_METRICS"
TARGET=http://flood.example:$CLIENT_METRICS/metrics
# scrape USER:PASSWORD [CURL_ARG...]: prints "STATUS SECONDS" of one scrape through the proxy.
scrape() {
    local user=$1
    shift
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 30 -x "$PROXY" \
        --proxy-cacert "$TMP/ca.crt" -U "$user" "$@" "$TARGET" 2>/dev/null || true
}
up=""
for ((i = 0; i < 150; i++)); do # 15 s
    alive "$PROXY_PID" || fail "the proxy exited: $(tail -3 "$TMP/proxy.log")"
    up=$(scrape prom:right-password --max-time 2)
    [ "${up%% *}" = 200 ] && break
    sleep 0.1
done
[ "${up%% *}" = 200 ] || fail "no scrape through the proxy within 15 s (last: $up)"
ok "a scrape through the proxy works; the scraper's login is cached now"

# --- the cached scraper, every 0.5 s --------------------------------------------------------------
cached_scraper() {
    while :; do
        scrape prom:right-password
        sleep 0.5
    done
}
cached_scraper >"$TMP/cached.txt" 2>/dev/null &
SCRAPER_PID=$!
PIDS+=("$SCRAPER_PID") NAMES+=(cached-scraper) LOGS+=("$TMP/cached.txt")

# --- the flood: kept-alive connections from 127.0.0.2 -----------------------------------------------
start_bg flood "$TMP/flood.txt" curl -sS -Z --parallel-max "$FLOOD_CONNECTIONS" --interface 127.0.0.2 \
    -x "$PROXY" --proxy-cacert "$TMP/ca.crt" -U prom:wrong -o /dev/null -w '%{http_code}\n' \
    "$TARGET?[1-1000000]"
FLOOD_PID=$LAST_PID
sleep 3
alive "$FLOOD_PID" || fail "the flood ended early: $(tail -3 "$TMP/flood.txt")"
ok "flood of $FLOOD_CONNECTIONS connections from 127.0.0.2 running"

# --- uncached logins from 127.0.0.1 ------------------------------------------------------------------
logins=()
deadline=$((SECONDS + FLOOD_SECONDS))
for i in 1 2 3 4 5; do
    got=$(scrape "probe$i:probe-password-$i")
    say "uncached login $i under the flood: status ${got%% *}, ${got##* } s"
    logins+=("$got")
    [ "$SECONDS" -lt "$deadline" ] && sleep 2
done
while [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
kill -TERM "$FLOOD_PID" "$SCRAPER_PID" 2>/dev/null
wait "$FLOOD_PID" "$SCRAPER_PID" 2>/dev/null

# --- figures --------------------------------------------------------------------------------------
flood_total=$(grep -c . "$TMP/flood.txt")
flood_codes=$(grep -E '^[0-9]{3}$' "$TMP/flood.txt" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
cached_total=$(grep -c . "$TMP/cached.txt")
cached_failed=$(grep -vc '^200 ' "$TMP/cached.txt")
cached_worst=$(awk '{ if ($2 > m) m = $2 } END { printf "%.3f", m }' "$TMP/cached.txt")
login_worst=$(printf '%s\n' "${logins[@]}" | awk '{ if ($2 > m) m = $2 } END { printf "%.3f", m }')
logins_ok=$(printf '%s\n' "${logins[@]}" | grep -c '^200 ')
say "flood: $flood_total requests answered in ~$((FLOOD_SECONDS + 3)) s ($flood_codes)"
say "uncached logins: $logins_ok of 5 answered 200, slowest ${login_worst} s"
say "cached scraper: $cached_failed of $cached_total scrapes failed, slowest ${cached_worst} s"
refused=$(curl -sS --max-time 10 --cacert "$TMP/ca.crt" -u prom:right-password "$PROXY/metrics" 2>/dev/null |
    grep -E '^pushprox_auth_(failures_total\{reason="(scrape_credentials_wrong|too_many_failures|password_checks_busy)"|password_)' | one_line)
say "proxy /metrics: ${refused:-no pushprox_auth_failures_total}"

# --- the registry and the client under announcements and slow scrapes -------------------------------
# The tests print one line of figures each; their asserts (64 MiB, 64 threads) hold here too.
figures() {
    local pattern=$1 out
    shift
    out=$(cd "$ROOT" && "$@" -- --nocapture --test-threads 1 2>&1) || fail "$* failed: $(tail -5 <<<"$out")"
    grep -E "$pattern" <<<"$out" | while read -r line; do say "$line"; done
}
figures 'largest announcements|GET /' env PUSHPROX_PROXY_BIN="$PROXY_BIN" \
    cargo test -q -p pushprox-proxy --test abuse_registry three_hundred_largest_announcements
figures 'largest announcements' env PUSHPROX_PROXY_BIN="$PROXY_BIN" \
    PUSHPROX_REGISTRY_CLIENTS="${REGISTRY_CLIENTS:-10000}" \
    cargo test -q -p pushprox-proxy --test abuse_registry a_large_registry_is_read
figures 'hostile proxy for' env PUSHPROX_CLIENT_BIN="$CLIENT_BIN" \
    cargo test -q -p pushprox-client --test hostile_proxy a_proxy_flooding_the_client

PASS_DETAIL="uncached login under flood: slowest ${login_worst} s ($logins_ok/5 ok); cached scraper: $cached_failed/$cached_total failed"
PASSED=1
