#!/usr/bin/env bash
# The benchmark of issue 5: how fast and how small pushprox-rs is, measured on this machine,
# one line per figure ("bench: ..."):
#   1. scrapes of a known 20 KiB body through the proxy and 100 real clients (FQDNs 127.0.0.2
#      ..=127.0.0.101, each with its own target), then through 1 client, each under 8 keep-alive
#      scrapers for BENCH_SECONDS; the same scrapes straight to the targets; the ratios;
#   2. the proxy's resident memory and threads holding 1,000 and 10,000 idle polls;
#   3. one 100 MiB scrape relayed through the proxy and one client: time, MB/s, peak RSS;
#   4. idle RSS of each binary, and the sizes of the static builds (scripts/build-static.sh);
#   5. sizing (issue 11): per idle client the proxy's memory, descriptors and threads; scrapes
#      per second per core of proxy CPU at 20 KiB and 200 KiB bodies, on one proxy and on three
#      shards behind nginx (scripts/nginx-shards.conf.template), all on this machine's cores;
#   6. CPU per scrape (issue 21): the proxy's and the clients' CPU time per 20 KiB scrape under
#      the load of figure 1 (CLIENTS clients, 8 keep-alive scrapers), beside the Go pair under
#      the same load (PUSHPROX_GO_BIN_DIR) and an nginx reverse-proxy hop of the same body
#      (keep-alive upstream), in BENCH_ROUNDS alternating rounds (default 2), with the ratios.
# Every response is checked byte for byte; a wrong status or byte fails the run (exit 1).
# The targets are nginx when it is installed (started here with its own prefix and config),
# else the bench tool's own server; the load tool is proxy/examples/bench/.
#
#   scripts/bench.sh                  full run (builds the release binaries first)
#   BENCH_SECONDS=30 scripts/bench.sh longer load phases (default 10)
#   scripts/bench.sh --smoke          same code paths, tiny numbers (2 s, 5 clients, 50 idle
#                                     polls, 1 MiB relay), for CI; timings mean nothing there
#   BENCH_FIGURES="2 3" scripts/bench.sh   only some of the figures (default "1 2 3 4 5 6")
#   PUSHPROX_BIN_DIR=target/debug scripts/bench.sh --smoke
#                                     use binaries already built (the load tool from
#                                     DIR/examples/, else built in release)
#   scripts/build-static.sh && PUSHPROX_BIN_DIR=target/static/x86_64-unknown-linux-musl \
#       BENCH_FIGURES="2 3 4" scripts/bench.sh    memory figures of the static binaries
#   PUSHPROX_GO_BIN_DIR=/path/to/go/bin scripts/bench.sh
#                                     also measures the Go pair (its pushprox-proxy and
#                                     pushprox-client, built outside this repository) under the
#                                     same 1-client load in the same run, for comparison,
#                                     and under the load of figure 6
#
# Everything listens on 127.0.0.0/8 only; every wait is bounded, the whole run is bounded
# (BENCH_TIME_LIMIT seconds), and every process started here is stopped on exit.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

SMOKE=0
script_flag --smoke "$@" && SMOKE=1

if [ "$SMOKE" = 1 ]; then
    LOAD_SECONDS=${BENCH_SECONDS:-2}
    WARMUP=0.3
    CLIENTS=5
    IDLE_COUNTS=(50)
    BIG_BYTES=$((1 << 20))
    TIME_LIMIT=${BENCH_TIME_LIMIT:-120}
else
    LOAD_SECONDS=${BENCH_SECONDS:-10}
    WARMUP=1
    CLIENTS=100
    IDLE_COUNTS=(1000 10000)
    BIG_BYTES=$((100 << 20))
    TIME_LIMIT=${BENCH_TIME_LIMIT:-$((900 + 8 * LOAD_SECONDS))}
fi
CONNECTIONS=8
FIGURES=" ${BENCH_FIGURES:-1 2 3 4 5 6} "
# want N: whether figure N is asked for.
want() { [[ $FIGURES == *" $1 "* ]]; }

need curl || exit 1
need python3 "lib.sh picks free ports with it" || exit 1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pushprox-bench.XXXXXX")
FAILED=0
WATCHDOG=

cleanup() {
    [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
    stop_all
    if [ "$FAILED" = 1 ]; then
        echo "bench: logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'echo "bench: stopped by a signal" >&2; FAILED=1; exit 1' INT TERM

# The run bounds itself: past TIME_LIMIT the watchdog sends us SIGTERM and the trap cleans up.
# Its sleep holds no output open, so a pipe after this script ends when the script does.
watchdog() {
    local s
    sleep "$TIME_LIMIT" >/dev/null 2>&1 &
    s=$!
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    wait "$s" || exit 0
    echo "bench: over the time limit of ${TIME_LIMIT}s (BENCH_TIME_LIMIT), stopping" >&2
    kill -TERM $$
}
watchdog &
WATCHDOG=$!

# die: exit 1 after a failure reported inside $(...), keeping the logs.
die() {
    FAILED=1
    exit 1
}

fail() {
    FAILED=1
    echo "bench: FAIL: $*" >&2
    dump_logs >&2
    exit 1
}

# --- binaries ----------------------------------------------------------------------------------
if [ -n "${PUSHPROX_BIN_DIR:-}" ]; then
    BIN=$PUSHPROX_BIN_DIR
else
    need cargo "install Rust, or set PUSHPROX_BIN_DIR" || exit 1
    say "building the release binaries and the bench tool"
    # --bins too: with --examples alone cargo builds only the examples.
    (cd "$ROOT" && cargo build --release -q --workspace --bins --examples) || fail "cargo build failed"
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
PROXY_BIN=$BIN/pushprox-proxy
CLIENT_BIN=$BIN/pushprox-client
BENCH=$BIN/examples/bench
# scripts/build-static.sh builds only the two binaries: the load tool then comes from a release
# build, which does not change what is measured of the proxy and the client.
if [ ! -x "$BENCH" ] && [ -n "${PUSHPROX_BIN_DIR:-}" ] && command -v cargo >/dev/null 2>&1; then
    say "no load tool in $BIN/examples; building it (cargo build --release --example bench)"
    (cd "$ROOT" && cargo build --release -q -p pushprox-proxy --example bench) || fail "cargo build failed"
    BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench
fi
for b in "$PROXY_BIN" "$CLIENT_BIN" "$BENCH"; do
    [ -x "$b" ] || fail "$b is missing (cargo build --release --workspace --bins --examples)"
done

# File descriptors: each idle poll is one socket in the proxy and one in the bench tool; the
# load tool holds 10,000 at once: as root, lift the hard limit first. The proxy of figure 2
# runs under ulimit -n 20000, as an operator would set it for 10,000 clients.
[ "$(id -u)" = 0 ] && ulimit -Hn 65536 2>/dev/null
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$HARD"; fi
NOFILE=$(ulimit -n)

# --- helpers -----------------------------------------------------------------------------------
# status_of PID FIELD: a field of /proc/PID/status, as a number (kB for memory).
status_of() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null; }
TICKS=$(getconf CLK_TCK)
# cpu_ticks PID...: user+system CPU of the processes so far, in clock ticks.
cpu_ticks() {
    local pid t=0 f
    for pid in "$@"; do
        f=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || fail "process $pid is gone"
        t=$((t + f))
    done
    echo "$t"
}
# kv LINE KEY: the value of KEY=value in a line of the bench tool.
kv() { printf ' %s\n' "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
# ms MICROSECONDS
ms() { awk -v u="$1" 'BEGIN { printf(u < 10000 ? "%.2fms" : "%.1fms", u / 1000) }'; }
# mib KIB
mib() { awk -v k="$1" 'BEGIN { printf("%.1fMiB", k / 1024) }'; }

# tool TIMEOUT SUBCOMMAND ARG...: runs the bench tool, bounded; its result line on stdout.
tool() {
    local limit=$1 out
    shift
    if ! out=$(timeout "$limit" "$BENCH" "$@" 2>"$TMP/tool.err"); then
        cat "$TMP/tool.err" >&2
        fail "bench $1 failed (exit status above; timeout is ${limit}s)"
    fi
    cat "$TMP/tool.err" >&2
    printf '%s\n' "$out" | tail -n 1
}

# start_proxy NAME [FLAG...]: a fresh proxy on a free port; sets PROXY_PID, PROXY_ADDR.
start_proxy() {
    local name=$1 port
    shift
    port=$(free_port) || fail "no free port"
    PROXY_ADDR=127.0.0.1:$port
    start_bg "$name" "$TMP/$name.log" "$PROXY_BIN" -l "$PROXY_ADDR" --log.level warn "$@"
    PROXY_PID=$LAST_PID
    wait_http "$name" "$PROXY_PID" "http://$PROXY_ADDR/-/healthy" 10 || fail "$FAIL_REASON"
}

# start_proxy_nofile LIMIT NAME [FLAG...]: start_proxy with its open-files limit, soft and hard,
# set to LIMIT (the proxy raises its soft limit to the hard one at start).
start_proxy_nofile() {
    local limit=$1 name=$2 port
    shift 2
    port=$(free_port) || fail "no free port"
    PROXY_ADDR=127.0.0.1:$port
    start_bg "$name" "$TMP/$name.log" sh -c "ulimit -n $limit && exec \"\$0\" \"\$@\"" \
        "$PROXY_BIN" -l "$PROXY_ADDR" --log.level warn "$@"
    PROXY_PID=$LAST_PID
    wait_http "$name" "$PROXY_PID" "http://$PROXY_ADDR/-/healthy" 10 || fail "$FAIL_REASON"
}

# start_client NAME FQDN: a client polling the current proxy; sets CLIENT_PID.
start_client() {
    start_bg "$1" "$TMP/$1.log" "$CLIENT_BIN" --proxy-url "http://$PROXY_ADDR/" --fqdn "$2" \
        --metrics-addr 127.0.0.1:0 --log.level warn
    CLIENT_PID=$LAST_PID
}

# start_clients PREFIX: one client per host of HOSTS, named PREFIX-HOST; sets CLIENT_PIDS.
start_clients() {
    CLIENT_PIDS=()
    for h in "${HOSTS[@]}"; do
        start_client "$1-$h" "$h"
        CLIENT_PIDS+=("$CLIENT_PID")
    done
}

# polls_waiting: the proxy's pushprox_polls_waiting gauge.
polls_waiting() {
    curl -sS --max-time 2 "http://$PROXY_ADDR/metrics" 2>/dev/null |
        awk '$1 == "pushprox_polls_waiting" { print $2 }'
}

# wait_polls N SECONDS: until N polls wait at the proxy.
wait_polls() {
    local want=$1 deadline=$((SECONDS + $2)) got=
    while [ "$SECONDS" -lt "$deadline" ]; do
        alive "$PROXY_PID" || fail "the proxy exited"
        got=$(polls_waiting)
        [ "${got:-0}" -ge "$want" ] 2>/dev/null && return 0
        sleep 0.1
    done
    fail "only ${got:-0} of $want polls waiting at the proxy after $2 s (see the client logs)"
}

# wait_line FILE TEXT SECONDS PID: until FILE has a line starting with TEXT.
wait_line() {
    local deadline=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$deadline" ]; do
        grep -q "^$2" "$1" 2>/dev/null && return 0
        alive "$4" || fail "$(basename "$1" .log) exited: $(tail -n 3 "$1")"
        sleep 0.1
    done
    fail "$(basename "$1" .log) not ready within $3 s"
}

say "$( ((SMOKE)) && echo "smoke run: timings are not figures; ")$(nproc) CPUs, ulimit -n $NOFILE, load ${LOAD_SECONDS}s x $CONNECTIONS connections"

# --- targets -----------------------------------------------------------------------------------
LAST_HOST=127.0.0.$((CLIENTS + 1))
HOSTS=()
for ((n = 2; n <= CLIENTS + 1; n++)); do HOSTS+=("127.0.0.$n"); done
PORT=$(free_port "${HOSTS[@]}") || fail "no port free on ${HOSTS[0]}..$LAST_HOST"
BIG_PORT=$(free_port 127.0.0.2) || fail "no free port"
[ "$BIG_PORT" = "$PORT" ] && BIG_PORT=$(free_port 127.0.0.2)

# The tool's own target always serves the big relay; the 20 KiB scrapes go to nginx if present.
start_bg big-target "$TMP/big-target.log" "$BENCH" target --hosts 127.0.0.2 --count 1 \
    --port "$BIG_PORT" --seconds "$TIME_LIMIT"
wait_line "$TMP/big-target.log" "target ready" 10 "$LAST_PID"

if command -v nginx >/dev/null 2>&1; then
    TARGET_KIND=nginx
    mkdir -p "$TMP/nginx/logs" "$TMP/nginx/html"
    "$BENCH" write-body --out "$TMP/nginx/html/20k" || fail "cannot write the body"
    {
        echo "daemon off; master_process on; worker_processes auto;"
        echo "pid $TMP/nginx/nginx.pid; error_log stderr warn;"
        [ "$(id -u)" = 0 ] && echo "user root;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;"
        for p in client_body proxy fastcgi uwsgi scgi; do echo "  ${p}_temp_path $TMP/nginx/$p;"; done
        echo "  server {"
        for h in "${HOSTS[@]}"; do echo "    listen $h:$PORT;"; done
        echo "    default_type text/plain;"
        echo "    location = /20k { root $TMP/nginx/html; }"
        echo "  }"
        echo "}"
    } >"$TMP/nginx/nginx.conf"
    start_bg nginx "$TMP/nginx.log" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e stderr
    NGINX_PID=$LAST_PID
    deadline=$((SECONDS + 10))
    until [ "$(http_status "http://$LAST_HOST:$PORT/20k")" = 200 ]; do
        alive "$NGINX_PID" || fail "nginx exited: $(tail -n 3 "$TMP/nginx.log")"
        [ "$SECONDS" -lt "$deadline" ] || fail "nginx not ready within 10 s"
        sleep 0.1
    done
else
    TARGET_KIND="bench tool"
    start_bg target "$TMP/target.log" "$BENCH" target --hosts 127.0.0.2 --count "$CLIENTS" \
        --port "$PORT" --seconds "$TIME_LIMIT"
    wait_line "$TMP/target.log" "target ready" 10 "$LAST_PID"
fi

# --- 1. latency and throughput of 20 KiB scrapes -------------------------------------------------
if want 1; then
    start_proxy proxy-load
    start_clients client
    wait_polls "$CLIENTS" 60

    LOAD_LIMIT=$(awk -v s="$LOAD_SECONDS" -v w="$WARMUP" 'BEGIN { printf("%d", s + w + 60) }')
    # load LABEL COUNT [--proxy ADDR]: one load run against the first COUNT targets.
    load() {
        local label=$1 count=$2
        shift 2
        tool "$LOAD_LIMIT" load --label "$label" --hosts 127.0.0.2 --count "$count" --port "$PORT" \
            --connections "$CONNECTIONS" --seconds "$LOAD_SECONDS" --warmup "$WARMUP" "$@"
    }
    # figure LINE: "p50=.. p90=.. p99=.. p99.9=.. throughput=../s" of a load result.
    figure() {
        printf 'p50=%s p90=%s p99=%s p99.9=%s throughput=%s/s' "$(ms "$(kv "$1" p50_us)")" \
            "$(ms "$(kv "$1" p90_us)")" "$(ms "$(kv "$1" p99_us)")" "$(ms "$(kv "$1" p999_us)")" \
            "$(kv "$1" rate)"
    }
    # ratio PROXIED DIRECT WHAT
    ratio() {
        awk -v pp="$(kv "$1" p50_us)" -v dp="$(kv "$2" p50_us)" -v pr="$(kv "$1" rate)" \
            -v dr="$(kv "$2" rate)" -v what="$3" 'BEGIN {
            printf("bench: proxied/direct %s: p50 x%.1f (+%.2fms) throughput x%.3f\n",
                what, pp / dp, (pp - dp) / 1000, pr / dr) }'
    }

    for count in "$CLIENTS" 1; do
        if [ "$count" = 1 ]; then what="1 client"; else what="$count clients"; fi
        proxied=$(load "proxied-$count" "$count" --proxy "$PROXY_ADDR") || die
        direct=$(load "direct-$count" "$count") || die
        echo "bench: proxied 20KB via $what, $CONNECTIONS conns: $(figure "$proxied")"
        echo "bench: direct 20KB to $count $TARGET_KIND target$( ((count > 1)) && echo s), $CONNECTIONS conns: $(figure "$direct")"
        ratio "$proxied" "$direct" "$what"
    done
    stop_pids "$PROXY_PID" "${CLIENT_PIDS[@]}"

    # The Go pair under the same 1-client load, when its binaries are given.
    if [ -n "${PUSHPROX_GO_BIN_DIR:-}" ]; then
        GO_PROXY=$PUSHPROX_GO_BIN_DIR/pushprox-proxy GO_CLIENT=$PUSHPROX_GO_BIN_DIR/pushprox-client
        [ -x "$GO_PROXY" ] && [ -x "$GO_CLIENT" ] || fail "no pushprox-proxy and pushprox-client in $PUSHPROX_GO_BIN_DIR"
        port=$(free_port) || fail "no free port"
        PROXY_ADDR=127.0.0.1:$port
        start_bg go-proxy "$TMP/go-proxy.log" "$GO_PROXY" --web.listen-address "$PROXY_ADDR"
        PROXY_PID=$LAST_PID
        wait_http go-proxy "$PROXY_PID" "http://$PROXY_ADDR/clients" 10 || fail "$FAIL_REASON"
        start_bg go-client "$TMP/go-client.log" "$GO_CLIENT" --proxy-url "http://$PROXY_ADDR/" --fqdn 127.0.0.2
        GO_CLIENT_PID=$LAST_PID
        deadline=$((SECONDS + 30))
        until curl -sS --max-time 2 "http://$PROXY_ADDR/clients" 2>/dev/null | grep -q 127.0.0.2; do
            [ "$SECONDS" -lt "$deadline" ] || fail "the Go client did not register within 30 s"
            sleep 0.2
        done
        go=$(load "go-proxied-1" 1 --proxy "$PROXY_ADDR") || die
        echo "bench: Go pair 20KB via 1 client, $CONNECTIONS conns: $(figure "$go")"
        stop_pids "$PROXY_PID" "$GO_CLIENT_PID"
    fi
fi

# --- 2. idle polls -------------------------------------------------------------------------------
# Two kinds: keep-alive polls, as the Go client sends them, and polls that ask for
# Connection: close. Either is parked as its socket alone: one descriptor, no thread. The proxy
# runs under ulimit -n 20000.
PROXY_NOFILE=$((NOFILE < 20000 ? NOFILE : 20000))
want 2 || IDLE_COUNTS=()
for count in "${IDLE_COUNTS[@]}"; do
    fits=$(((PROXY_NOFILE - 200) / 100 * 100))
    if [ "$count" -gt "$fits" ]; then
        echo "bench: idle polls $count: ulimit -n $PROXY_NOFILE holds only $fits polls in the proxy; measuring $fits"
        count=$fits
    fi
    max_conn=$((count + 1024 > 16384 ? count + 1024 : 16384))
    for kind in keep-alive close; do
        if [ "$kind" = close ]; then what="Connection: close"; else what="keep-alive, as the Go client's"; fi
        # Every poll comes from 127.0.0.1 here: the per-address caps are lifted.
        start_proxy_nofile "$PROXY_NOFILE" "proxy-idle-$count-$kind" --web.max-connections "$max_conn" \
            --poll.max-parked-per-address "$max_conn" --web.max-idle-per-address "$max_conn"
        r=$(tool 300 idle-polls --proxy "$PROXY_ADDR" --count "$count" --proxy-pid "$PROXY_PID" \
            --timeout 240 --connection "$kind") || die
        awk -v n="$count" -v b="$(kv "$r" rss_before_kib)" -v a="$(kv "$r" rss_kib)" -v what="$what" \
            -v tb="$(kv "$r" threads_before)" -v ta="$(kv "$r" threads)" -v s="$(kv "$r" ready_seconds)" \
            -v fds="$(kv "$r" fds)" -v lim="$PROXY_NOFILE" 'BEGIN {
            printf("bench: idle polls %d (%s, ulimit -n %d): proxy RSS=%.1fMiB threads=%d fds=%d (idle proxy %.1fMiB/%d threads; per poll +%.2fKiB +%.3f threads %.3f fds; all waiting after %ss; at that rate 10000 polls: %.0fMiB)\n",
                n, what, lim, a / 1024, ta, fds, b / 1024, tb, (a - b) / n, (ta - tb) / n, fds / n, s, (b + (a - b) / n * 10000) / 1024) }'
        stop_pids "$PROXY_PID"
    done
done

# --- 3. one big scrape through one client ---------------------------------------------------------
if want 3; then
    start_proxy proxy-big
    start_client client-big 127.0.0.2
    wait_polls 1 30
    r=$(tool 200 big --proxy "$PROXY_ADDR" --url "http://127.0.0.2:$BIG_PORT/big/$BIG_BYTES" \
        --pids "proxy=$PROXY_PID,client=$CLIENT_PID" --timeout 150) || die
    awk -v b="$BIG_BYTES" -v s="$(kv "$r" seconds)" -v m="$(kv "$r" mb_per_s)" \
        -v pp="$(kv "$r" proxy_peak_rss_kib)" -v cp="$(kv "$r" client_peak_rss_kib)" \
        -v ph="$(kv "$r" proxy_hwm_kib)" -v ch="$(kv "$r" client_hwm_kib)" \
        -v pb="$(kv "$r" proxy_rss_before_kib)" -v cb="$(kv "$r" client_rss_before_kib)" 'BEGIN {
        printf("bench: relay %gMiB via 1 client: %.2fs %.1fMB/s, peak RSS proxy=%.1fMiB client=%.1fMiB (VmHWM %.1f/%.1fMiB; before %.1f/%.1fMiB)\n",
            b / 1048576, s, m, pp / 1024, cp / 1024, ph / 1024, ch / 1024, pb / 1024, cb / 1024) }'
    stop_pids "$PROXY_PID" "$CLIENT_PID"
fi

# --- 4. idle binaries, static sizes ---------------------------------------------------------------
if want 4; then
    start_proxy proxy-idle
    sleep 1
    p_rss=$(status_of "$PROXY_PID" VmRSS) p_thr=$(status_of "$PROXY_PID" Threads)
    start_client client-idle idle-client.example
    wait_polls 1 30
    sleep 1
    c_rss=$(status_of "$CLIENT_PID" VmRSS) c_thr=$(status_of "$CLIENT_PID" Threads)
    p2_rss=$(status_of "$PROXY_PID" VmRSS)
    echo "bench: idle RSS proxy=$(mib "$p_rss") ($p_thr threads, no clients; $(mib "$p2_rss") with 1 poll) client=$(mib "$c_rss") ($c_thr threads, polling)"
    stop_pids "$PROXY_PID" "$CLIENT_PID"

    # scripts/build-static.sh builds them with its own Cargo profile: take whichever profile is there.
    sizes=
    for f in "${CARGO_TARGET_DIR:-$ROOT/target}"/static/*/pushprox-{proxy,client} \
        "${CARGO_TARGET_DIR:-$ROOT/target}"/x86_64-unknown-linux-musl/*/pushprox-{proxy,client}; do
        [ -f "$f" ] || continue
        profile=$(basename "$(dirname "$f")")
        sizes+=" $profile/$(basename "$f")=$(awk -v s="$(stat -c %s "$f")" 'BEGIN { printf("%.2fMiB", s / 1048576) }')"
    done
    if [ -n "$sizes" ]; then
        echo "bench: static sizes:$sizes"
    else
        echo "bench: static sizes: run scripts/build-static.sh first"
    fi
    size_of() { awk -v s="$(stat -L -c %s "$1")" 'BEGIN { printf("%.2fMiB", s / 1048576) }'; }
    echo "bench: sizes of the binaries measured here ($BIN): pushprox-proxy=$(size_of "$PROXY_BIN") pushprox-client=$(size_of "$CLIENT_BIN")"
fi
# --- 5. sizing: one proxy, then three shards behind nginx -----------------------------------------
# What an operator needs to size a fleet: per idle client the proxy's memory, descriptors and
# threads (idle keep-alive polls, as our client and the Go client send them); scrapes per
# second per core of proxy CPU at 20 KiB and 200 KiB bodies (CPU time of the proxy process, from
# /proc, over the load run); and the same through nginx (scripts/nginx-shards.conf.template)
# in front of three proxies. SIZING_CLIENTS clients (FQDNs 127.0.0.2.., all scraping the bench tool's target on
# 127.0.0.2 with --scrape.target-host) serve the load; everything shares this machine's cores.
if want 5; then
    if ((SMOKE)); then SIZING_CLIENTS=3 SIZING_IDLE=50; else SIZING_CLIENTS=10 SIZING_IDLE=2000; fi

    start_proxy_nofile "$PROXY_NOFILE" proxy-sizing-idle --web.max-connections 16384 \
        --poll.max-parked-per-address 16384 --web.max-idle-per-address 16384
    r=$(tool 300 idle-polls --proxy "$PROXY_ADDR" --count "$SIZING_IDLE" --proxy-pid "$PROXY_PID" \
        --timeout 240 --connection keep-alive) || die
    awk -v n="$SIZING_IDLE" -v b="$(kv "$r" rss_before_kib)" -v a="$(kv "$r" rss_kib)" \
        -v tb="$(kv "$r" threads_before)" -v ta="$(kv "$r" threads)" -v fds="$(kv "$r" fds)" 'BEGIN {
        printf("bench: sizing idle clients %d on 1 proxy: per client +%.2fKiB RSS, %.3f fds, +%.4f threads (proxy %.1fMiB, %d threads, %d fds)\n",
            n, (a - b) / n, fds / n, (ta - tb) / n, a / 1024, ta, fds) }'
    stop_pids "$PROXY_PID"

    SIZING_HOSTS=()
    for ((n = 2; n < SIZING_CLIENTS + 2; n++)); do SIZING_HOSTS+=("127.0.0.$n"); done
    # sizing_clients URL: SIZING_CLIENTS clients polling URL; sets SIZING_PIDS.
    sizing_clients() {
        local h
        SIZING_PIDS=()
        for h in "${SIZING_HOSTS[@]}"; do
            start_bg "sizing-client-$h" "$TMP/sizing-client-$h.log" "$CLIENT_BIN" --proxy-url "$1" \
                --fqdn "$h" --scrape.target-host 127.0.0.2 --metrics-addr 127.0.0.1:0 --log.level warn
            SIZING_PIDS+=("$LAST_PID")
        done
    }
    # sizing_load WHAT VIA PIDS NGINX_PID: a load run of 20 KiB and of 200 KiB scrapes through VIA,
    # with the CPU the proxies PIDS (comma-separated) and nginx (or "") used.
    sizing_load() {
        local what=$1 via=$2 path size c0 n0 r c1 n1 rss=0 thr=0 pid
        local -a pids
        IFS=, read -ra pids <<<"$3"
        for path in /20k /big/204800; do
            if [ "$path" = /20k ]; then size=20KB; else size=200KB; fi
            c0=$(cpu_ticks "${pids[@]}") n0=0
            [ -n "$4" ] && n0=$(cpu_ticks "$4")
            r=$(tool "$LOAD_LIMIT" load --label "sizing-$size" --hosts 127.0.0.2 --count "$SIZING_CLIENTS" \
                --port "$BIG_PORT" --path "$path" --connections "$CONNECTIONS" --seconds "$LOAD_SECONDS" \
                --warmup "$WARMUP" --proxy "$via") || die
            c1=$(cpu_ticks "${pids[@]}") n1=0
            [ -n "$4" ] && n1=$(cpu_ticks "$4")
            for pid in "${pids[@]}"; do
                rss=$((rss + $(status_of "$pid" VmRSS))) thr=$((thr + $(status_of "$pid" Threads)))
            done
            awk -v what="$what" -v size="$size" -v rate="$(kv "$r" rate)" -v secs="$(kv "$r" seconds)" \
                -v w="$WARMUP" -v p50="$(kv "$r" p50_us)" -v cpu=$((c1 - c0)) -v ncpu=$((n1 - n0)) \
                -v tck="$TICKS" -v rss="$rss" -v thr="$thr" -v nginx="$4" 'BEGIN {
                # The CPU counts cover the warm-up too: scale the scrapes to the whole run.
                scrapes = rate * (secs + w); pc = cpu / tck; nc = ncpu / tck
                printf("bench: sizing %s %s: %.0f scrapes/s p50=%.2fms; proxy CPU %.2fs = %.0f scrapes/s per proxy core", what, size, rate, p50 / 1000, pc, pc > 0 ? scrapes / pc : 0)
                if (nginx != "") printf("; nginx CPU %.2fs, %.0f scrapes/s per core of proxies+nginx", nc, (pc + nc) > 0 ? scrapes / (pc + nc) : 0)
                printf("; proxies RSS %.1fMiB threads %d\n", rss / 1024, thr) }'
            rss=0 thr=0
        done
    }
    LOAD_LIMIT=$(awk -v s="$LOAD_SECONDS" -v w="$WARMUP" 'BEGIN { printf("%d", s + w + 60) }')

    start_proxy proxy-sizing
    sizing_clients "http://$PROXY_ADDR/"
    wait_polls "$SIZING_CLIENTS" 60
    sizing_load "1 proxy, $SIZING_CLIENTS clients, $CONNECTIONS conns," "$PROXY_ADDR" "$PROXY_PID" ""
    stop_pids "$PROXY_PID" "${SIZING_PIDS[@]}"

    if command -v nginx >/dev/null 2>&1; then
        SHARD_PIDS=() SHARD_ADDRS=()
        for i in 0 1 2; do
            start_proxy "proxy-shard-$i" --web.trusted-proxies 127.0.0.1 --poll.max-hold 50s
            SHARD_PIDS+=("$PROXY_PID") SHARD_ADDRS+=("$PROXY_ADDR")
        done
        read -r LB_PORT GO_PORT < <(free_ports 2 | paste -sd' ' -)
        mkdir -p "$TMP/lb"
        sed -e "s/@SHARD0@/${SHARD_ADDRS[0]}/g" -e "s/@SHARD1@/${SHARD_ADDRS[1]}/g" \
            -e "s/@SHARD2@/${SHARD_ADDRS[2]}/g" -e "s/@LISTEN@/127.0.0.1:$LB_PORT/g" \
            -e "s/@GO_LISTEN@/127.0.0.1:$GO_PORT/g" -e "s/@GO_PORT@/$GO_PORT/g" \
            "$ROOT/scripts/nginx-shards.conf.template" >"$TMP/lb/shards.conf"
        {
            echo "daemon off; master_process off; pid $TMP/lb/nginx.pid; error_log stderr warn;"
            echo "events { worker_connections 4096; }"
            echo "http { access_log off;"
            for p in client_body proxy fastcgi uwsgi scgi; do echo "  ${p}_temp_path $TMP/lb/$p;"; done
            echo "  include $TMP/lb/shards.conf; }"
        } >"$TMP/lb/nginx.conf"
        start_bg nginx-lb "$TMP/nginx-lb.log" nginx -p "$TMP/lb" -c "$TMP/lb/nginx.conf" -e stderr
        LB_PID=$LAST_PID
        wait_http nginx-lb "$LB_PID" "http://127.0.0.1:$LB_PORT/shard/0/-/healthy" 10 || fail "$FAIL_REASON"
        sizing_clients "http://127.0.0.1:$LB_PORT/"
        deadline=$((SECONDS + 60)) waiting=0
        while [ "$waiting" -lt "$SIZING_CLIENTS" ]; do
            [ "$SECONDS" -lt "$deadline" ] || fail "only $waiting of $SIZING_CLIENTS polls waiting at the shards after 60 s"
            sleep 0.2
            waiting=0
            for a in "${SHARD_ADDRS[@]}"; do
                PROXY_ADDR=$a
                waiting=$((waiting + $(polls_waiting | awk '{ printf("%d", $1) }')))
            done
        done
        spread=""
        for a in "${SHARD_ADDRS[@]}"; do PROXY_ADDR=$a; spread+="$(polls_waiting | awk '{ printf("%d", $1) }')/"; done
        echo "bench: sizing shards: $SIZING_CLIENTS clients spread ${spread%/} over 3 proxies by nginx hash consistent"
        sizing_load "3 shards behind nginx, $SIZING_CLIENTS clients, $CONNECTIONS conns," "127.0.0.1:$LB_PORT" \
            "$(IFS=,; echo "${SHARD_PIDS[*]}")" "$LB_PID"
        stop_pids "$LB_PID" "${SHARD_PIDS[@]}" "${SIZING_PIDS[@]}"
    else
        echo "bench: sizing shards: nginx is not installed, skipped"
    fi
fi
# --- 6. CPU per scrape: ours, the Go pair, an nginx hop ---------------------------------------------
# The same load as figure 1 (CLIENTS clients, 8 keep-alive scrapers, the 20 KiB body checked
# byte for byte) through our pair, through the Go pair, and through one nginx worker
# reverse-proxying to the same targets (keep-alive upstream: one hop, what a scrape through the
# proxy cannot beat). CPU is utime+stime from /proc over the load run, divided by the scrapes
# (the warm-up counted on both sides). Rounds alternate ours / Go / nginx, as the machine's
# other load comes and goes; each round prints its line and the ratios of that round.
if want 6; then
    ROUNDS=${BENCH_ROUNDS:-2}
    ((SMOKE)) && ROUNDS=1
    LOAD_LIMIT=$(awk -v s="$LOAD_SECONDS" -v w="$WARMUP" 'BEGIN { printf("%d", s + w + 60) }')
    # cpu_load WHAT VIA PROXY_PIDS CLIENT_PIDS: a load run through VIA; prints
    # "rate=.. proxy_us=.. client_us=.." (client_us empty without CLIENT_PIDS).
    cpu_load() {
        local what=$1 via=$2 p0 c0=0 r p1 c1=0
        local -a pp cp
        IFS=, read -ra pp <<<"$3"
        IFS=, read -ra cp <<<"$4"
        p0=$(cpu_ticks "${pp[@]}")
        ((${#cp[@]})) && c0=$(cpu_ticks "${cp[@]}")
        r=$(tool "$LOAD_LIMIT" load --label "cpu-$what" --hosts 127.0.0.2 --count "$CLIENTS" \
            --port "$PORT" --connections "$CONNECTIONS" --seconds "$LOAD_SECONDS" \
            --warmup "$WARMUP" --proxy "$via") || die
        p1=$(cpu_ticks "${pp[@]}")
        ((${#cp[@]})) && c1=$(cpu_ticks "${cp[@]}")
        awk -v rate="$(kv "$r" rate)" -v secs="$(kv "$r" seconds)" -v w="$WARMUP" \
            -v p=$((p1 - p0)) -v c=$((c1 - c0)) -v n=${#cp[@]} -v tck="$TICKS" 'BEGIN {
            scrapes = rate * (secs + w)
            printf("rate=%.0f proxy_us=%.1f", rate, p / tck * 1e6 / scrapes)
            if (n > 0) printf(" client_us=%.1f", c / tck * 1e6 / scrapes)
            printf("\n") }'
    }
    # The nginx hop: one worker process (master_process off), so its PID is all its CPU.
    HOP_PORT=$(free_port) || fail "no free port"
    mkdir -p "$TMP/hop"
    {
        echo "daemon off; master_process off; pid $TMP/hop/nginx.pid; error_log stderr warn;"
        [ "$(id -u)" = 0 ] && echo "user root;"
        echo "events { worker_connections 4096; }"
        echo "http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;"
        for p in client_body proxy fastcgi uwsgi scgi; do echo "  ${p}_temp_path $TMP/hop/$p;"; done
        echo "  upstream targets { server 127.0.0.2:$PORT; keepalive 32; }"
        echo "  server { listen 127.0.0.1:$HOP_PORT;"
        echo "    location / { proxy_pass http://targets; proxy_http_version 1.1;"
        echo "      proxy_set_header Connection \"\"; proxy_buffers 8 8k; } } }"
    } >"$TMP/hop/nginx.conf"
    HOP_PID=
    if [ "$TARGET_KIND" = nginx ]; then
        start_bg nginx-hop "$TMP/nginx-hop.log" nginx -p "$TMP/hop" -c "$TMP/hop/nginx.conf" -e stderr
        HOP_PID=$LAST_PID
        deadline=$((SECONDS + 10))
        until [ "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 -x "127.0.0.1:$HOP_PORT" \
            "http://127.0.0.2:$PORT/20k" 2>/dev/null)" = 200 ]; do
            alive "$HOP_PID" || fail "the nginx hop exited: $(tail -n 3 "$TMP/nginx-hop.log")"
            [ "$SECONDS" -lt "$deadline" ] || fail "the nginx hop not ready within 10 s"
            sleep 0.1
        done
    fi
    if [ -n "${PUSHPROX_GO_BIN_DIR:-}" ]; then
        GO_PROXY=$PUSHPROX_GO_BIN_DIR/pushprox-proxy GO_CLIENT=$PUSHPROX_GO_BIN_DIR/pushprox-client
        [ -x "$GO_PROXY" ] && [ -x "$GO_CLIENT" ] || fail "no pushprox-proxy and pushprox-client in $PUSHPROX_GO_BIN_DIR"
    fi
    OURS_ALL=() GO_ALL=() HOP_ALL=()
    for ((round = 1; round <= ROUNDS; round++)); do
        start_proxy proxy-cpu
        start_clients client-cpu
        wait_polls "$CLIENTS" 60
        ours=$(cpu_load ours "$PROXY_ADDR" "$PROXY_PID" "$(IFS=,; echo "${CLIENT_PIDS[*]}")")
        stop_pids "$PROXY_PID" "${CLIENT_PIDS[@]}"
        line="bench: cpu per 20KB scrape, round $round of $ROUNDS, $CLIENTS clients, $CONNECTIONS conns: ours $(kv "$ours" rate)/s proxy=$(kv "$ours" proxy_us)us client=$(kv "$ours" client_us)us"
        OURS_ALL+=("$ours")
        go=
        if [ -n "${PUSHPROX_GO_BIN_DIR:-}" ]; then
            port=$(free_port) || fail "no free port"
            PROXY_ADDR=127.0.0.1:$port
            start_bg go-proxy-cpu "$TMP/go-proxy-cpu.log" "$GO_PROXY" --web.listen-address "$PROXY_ADDR"
            PROXY_PID=$LAST_PID
            wait_http go-proxy "$PROXY_PID" "http://$PROXY_ADDR/clients" 10 || fail "$FAIL_REASON"
            CPU_PIDS=()
            for h in "${HOSTS[@]}"; do
                start_bg "go-client-cpu-$h" "$TMP/go-client-cpu-$h.log" "$GO_CLIENT" \
                    --proxy-url "http://$PROXY_ADDR/" --fqdn "$h" --metrics-addr 127.0.0.1:0
                CPU_PIDS+=("$LAST_PID")
            done
            deadline=$((SECONDS + 60))
            until [ "$(curl -sS --max-time 2 "http://$PROXY_ADDR/clients" 2>/dev/null | grep -o '"targets"' | wc -l)" -ge "$CLIENTS" ]; do
                [ "$SECONDS" -lt "$deadline" ] || fail "the Go clients did not all register within 60 s"
                sleep 0.2
            done
            go=$(cpu_load go "$PROXY_ADDR" "$PROXY_PID" "$(IFS=,; echo "${CPU_PIDS[*]}")")
            stop_pids "$PROXY_PID" "${CPU_PIDS[@]}"
            line+="; Go $(kv "$go" rate)/s proxy=$(kv "$go" proxy_us)us client=$(kv "$go" client_us)us"
            GO_ALL+=("$go")
        fi
        hop=
        if [ -n "$HOP_PID" ]; then
            hop=$(cpu_load nginx "127.0.0.1:$HOP_PORT" "$HOP_PID" "")
            line+="; nginx hop $(kv "$hop" rate)/s $(kv "$hop" proxy_us)us"
            HOP_ALL+=("$hop")
        fi
        echo "$line"
        awk -v o="$(kv "$ours" proxy_us)" -v g="$(kv "$go" proxy_us)" -v n="$(kv "$hop" proxy_us)" \
            -v oc="$(kv "$ours" client_us)" -v gc="$(kv "$go" client_us)" \
            -v or="$(kv "$ours" rate)" -v gr="$(kv "$go" rate)" -v round="$round" 'BEGIN {
            printf("bench: cpu ratios, round %d:", round)
            if (n > 0) printf(" proxy/nginx-hop x%.2f;", o / n)
            if (g > 0) printf(" proxy/Go-proxy x%.2f; client/Go-client x%.2f; scrapes/s ours/Go x%.2f;", o / g, oc / gc, or / gr)
            printf("\n") }'
    done
    [ -n "$HOP_PID" ] && stop_pids "$HOP_PID"
fi
say "done in ${SECONDS}s"
