#!/usr/bin/env bash
# The static binaries of other architectures at work, under emulation: builds them
# (scripts/build-static.sh, which also checks them: static, size, empty environment, TLS), then
# runs each target's pair with Debian's qemu-user-static (qemu-ARCH-static -cpu OLDEST ./bin;
# binfmt_misc is not needed) next to the x86-64 binaries of the workspace:
#   1. --version and --help of both binaries: exit 0, the right name and version, the flags'
#      text;
#   2. the target's client polls the x86-64 proxy, and a scrape of a real node_exporter
#      (Debian's prometheus-node-exporter) is relayed through it;
#   3. the target's proxy relays a node_exporter scrape from an x86-64 client;
#   and each of the target's binaries, sent SIGTERM after its relay, exits 0 by itself.
# The scraper is curl using the proxy as its HTTP proxy, as Prometheus does (proxy_url). Each
# relayed scrape must answer 200 with the metric families (# TYPE lines) that a direct fetch of
# the same node_exporter lists, node_exporter_build_info and node_cpu_seconds_total among them:
# byte order, word size and soft-float all show there (big-endian: mips, s390x).
#
#   scripts/emulation.sh            one target of each family: aarch64, armv7, s390x
#   scripts/emulation.sh --all      every target of scripts/lib.sh's STATIC_TARGETS but x86-64
#   scripts/emulation.sh --target mips-unknown-linux-musl      one (repeatable)
#   PUSHPROX_BIN_DIR=target/debug scripts/emulation.sh   x86-64 binaries already built there
#   EMULATION_SKIP_BUILD=1 scripts/emulation.sh    use target/static/<triple>/ as it is
#
# Installs (as root, apt-get) what is missing: qemu-user-static, prometheus-node-exporter, curl;
# scripts/static-toolchain.sh installs each cross toolchain. Everything listens on 127.0.0.0/8
# (the node_exporter on 127.0.0.2, the FQDN the clients serve), every wait is bounded, and
# whatever was started is stopped on exit. Ends with one line per target and "emulation: PASS"
# or "emulation: FAIL" (with the logs of the first failure of each target), exit 0 or 1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

BINS=(pushprox-proxy pushprox-client)
START=$SECONDS
targets=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --target) [ "$#" -ge 2 ] || { echo "--target needs a triple" >&2; exit 2; }; targets+=("$2"); shift 2 ;;
        --target=*) targets+=("${1#--target=}"); shift ;;
        --all) targets+=("${STATIC_TARGETS[@]:1}"); shift ;;
        -h | --help) script_help; exit 0 ;;
        *) echo "unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[ "${#targets[@]}" -gt 0 ] || targets=("${STATIC_CI_TARGETS[@]:1}")
for t in "${targets[@]}"; do
    static_target "$t" >/dev/null || exit 2
    [ "$t" != x86_64-unknown-linux-musl ] || { echo "x86-64 needs no emulation: scripts/build-static.sh checks it" >&2; exit 2; }
done

TMP=$(mktemp -d) || exit 1
trap 'stop_all; rm -rf "$TMP"' EXIT
# fail REASON: this target failed; the logs so far are printed, the next target goes on.
fail() {
    echo "emulation: FAIL: $*"
    dump_logs
    stop_all
    return 1
}
ok() { echo "emulation: ok: $*"; }

# --- what it needs ------------------------------------------------------------------------------

declare -A package_of=([curl]=curl [python3]=python3 [file]=file)
for t in "${targets[@]}"; do
    static_target "$t" && package_of[$QEMU]=qemu-user-static
done
missing=()
for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${package_of[$cmd]}")
done
first_command prometheus-node-exporter node_exporter >/dev/null || missing+=(prometheus-node-exporter)
if [ "${#missing[@]}" -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    apt_install "${missing[@]}" || { echo "emulation: FAIL: cannot install ${missing[*]}"; exit 1; }
fi
NODE_EXPORTER=$(first_command prometheus-node-exporter node_exporter)

pushprox_bins || { echo "emulation: FAIL: no x86-64 binaries"; exit 1; }
X86_PROXY=$PROXY_BIN
X86_CLIENT=$CLIENT_BIN
want_version=$("$X86_CLIENT" --version | head -n 1 | awk '{ print $2 }')
static_dir=${CARGO_TARGET_DIR:-$ROOT/target}/static

# --- node_exporter and the scrape check ---------------------------------------------------------

P=$(free_port 127.0.0.2) || { echo "emulation: FAIL: no port free on 127.0.0.2"; exit 1; }
HOST=127.0.0.2

# families FILE: the sorted metric family names of an exposition (its # TYPE lines).
families() { grep -E '^# TYPE ' "$1" | awk '{ print $3 }' | sort -u; }

# check_scrape WHAT PROXY_PORT: scrapes http://$HOST:P/metrics through the proxy on
# 127.0.0.1:PROXY_PORT, and compares it with a direct fetch of the same node_exporter.
check_scrape() {
    local what=$1 pport=$2 code direct relayed name
    direct=$TMP/direct-$pport.txt relayed=$TMP/relayed-$pport.txt
    code=$(curl -sS --max-time 20 -o "$relayed" -w '%{http_code}' -x "http://127.0.0.1:$pport" \
        -H 'X-Prometheus-Scrape-Timeout-Seconds: 15' "http://$HOST:$P/metrics" 2>"$TMP/curl.err") ||
        { fail "$what: curl through the proxy failed: $(one_line <"$TMP/curl.err")"; return 1; }
    [ "$code" = 200 ] || { fail "$what: the scrape answered $code: $(head -c 300 "$relayed" | one_line)"; return 1; }
    curl -sS --max-time 10 -o "$direct" "http://$HOST:$P/metrics" || { fail "$what: direct fetch of $HOST:$P failed"; return 1; }
    for name in node_exporter_build_info node_cpu_seconds_total; do
        grep -q "^# HELP $name " "$relayed" || { fail "$what: the relayed body has no HELP line for $name"; return 1; }
        grep -qE "^$name\{" "$relayed" || { fail "$what: the relayed body has no sample of $name"; return 1; }
    done
    if ! diff <(families "$direct") <(families "$relayed") >"$TMP/families.diff"; then
        fail "$what: the relayed body's metric families differ from a direct fetch's: $(head -n 10 "$TMP/families.diff" | one_line)"
        return 1
    fi
    ok "$what: status 200, $(wc -c <"$relayed") bytes, $(families "$relayed" | wc -l) metric families, the same as a direct fetch ($(wc -c <"$direct") bytes)"
}

# wait_client WHAT PROXY_PORT PID: waits up to 60 s until the proxy lists $HOST in /clients
# (qemu starts a binary in about a second, but the machine may be busy).
wait_client() {
    local what=$1 pport=$2 pid=$3 n
    for ((n = 0; n < 300; n++)); do
        alive "$pid" || { fail "$what exited before it registered (log: $(tail -n 3 "${LOGS[-1]}" | one_line))"; return 1; }
        curl -sS --max-time 2 "http://127.0.0.1:$pport/clients" 2>/dev/null | grep -q "\"$HOST\"" && return 0
        sleep 0.2
    done
    fail "$what did not appear in the proxy's /clients within 60 s"
}

# stop_target WHAT PID: SIGTERM to the target's binary, which must end by itself with status 0
# within 20 s (both binaries finish what is in flight and exit 0), not by a signal.
stop_target() {
    local what=$1 pid=$2 n rc
    kill -TERM "$pid" 2>/dev/null
    for ((n = 0; n < 200; n++)); do
        alive "$pid" || break
        sleep 0.1
    done
    alive "$pid" && { fail "$what did not exit within 20 s of SIGTERM"; return 1; }
    wait "$pid"
    rc=$?
    [ "$rc" = 0 ] || { fail "$what exited with status $rc on SIGTERM, want 0 (a status above 128 is a signal: 139 SIGSEGV)"; return 1; }
}

# What --help must mention, per binary: a flag of each.
declare -A help_mentions=([pushprox-proxy]=--web.listen-address [pushprox-client]=--proxy-url)

# emulate TRIPLE: the three checks for one target; 1 at its first failure.
emulate() {
    local t=$1 b f v h what pport short
    { static_target "$t" && static_run "$t" "$static_dir/$t/pushprox-client"; } || { fail "$t: $QEMU is missing"; return 1; }
    short=${t%%-*}
    LOGS=() NAMES=()
    # 1. --version and --help, with an empty environment.
    for b in "${BINS[@]}"; do
        f=$static_dir/$t/$b
        [ -f "$f" ] || { fail "$f is missing (run scripts/build-static.sh --target $t)"; return 1; }
        v=$(cd "$TMP" && timeout 60 env -i "${RUN[@]}" "$f" --version 2>&1) ||
            { fail "$t $b --version exited non-zero: $(printf '%s' "$v" | head -n 3 | one_line)"; return 1; }
        [ "$(printf '%s' "$v" | head -n 1)" = "$b $want_version" ] ||
            { fail "$t $b --version printed \"$v\", not \"$b $want_version\""; return 1; }
        h=$(cd "$TMP" && timeout 60 env -i "${RUN[@]}" "$f" --help 2>&1) ||
            { fail "$t $b --help exited non-zero: $(printf '%s' "$h" | head -n 3 | one_line)"; return 1; }
        case "$h" in
            *"${help_mentions[$b]}"*) ;;
            *) fail "$t $b --help does not mention ${help_mentions[$b]}: $(printf '%s' "$h" | head -n 3 | one_line)"; return 1 ;;
        esac
        ok "$t $b ${RUN[0]:+under }${RUN[*]##*/}${RUN[0]:-natively}: \"$v\", --help $(printf '%s\n' "$h" | wc -l) lines ($(file -b "$f" | cut -d, -f1-2))"
    done

    # 2. The target's client, the x86-64 proxy.
    mapfile -t ports < <(free_ports 3) || { fail "no free ports"; return 1; }
    start_bg "x86-64 pushprox-proxy" "$TMP/x86-proxy-$short.log" "$X86_PROXY" -l "127.0.0.1:${ports[0]}"
    wait_http "x86-64 proxy" "$LAST_PID" "http://127.0.0.1:${ports[0]}/-/healthy" 20 || { fail "$FAIL_REASON"; return 1; }
    what="$short client via x86-64 proxy"
    start_bg "$short pushprox-client" "$TMP/$short-client.log" env -i "${RUN[@]}" "$static_dir/$t/pushprox-client" \
        --proxy-url "http://127.0.0.1:${ports[0]}/" --fqdn "$HOST" --metrics-addr "127.0.0.1:${ports[1]}"
    local target_pid=$LAST_PID
    wait_client "$what" "${ports[0]}" "$target_pid" && check_scrape "$what" "${ports[0]}" &&
        stop_target "$short client" "$target_pid" || return 1
    stop_all

    # 3. The target's proxy, an x86-64 client.
    what="x86-64 client via $short proxy"
    pport=${ports[2]}
    start_bg "$short pushprox-proxy" "$TMP/$short-proxy.log" env -i "${RUN[@]}" "$static_dir/$t/pushprox-proxy" -l "127.0.0.1:$pport"
    target_pid=$LAST_PID
    wait_http "$short proxy" "$target_pid" "http://127.0.0.1:$pport/-/healthy" 60 || { fail "$FAIL_REASON"; return 1; }
    start_bg "x86-64 pushprox-client for the $short proxy" "$TMP/x86-client-$short.log" \
        "$X86_CLIENT" --proxy-url "http://127.0.0.1:$pport/" --fqdn "$HOST" --metrics-addr 127.0.0.1:0
    wait_client "$what" "$pport" "$LAST_PID" && check_scrape "$what" "$pport" &&
        stop_target "$short proxy" "$target_pid" || return 1
    stop_all
}

# The node_exporter runs across targets; stop_all, between targets, stops only what came after.
"$NODE_EXPORTER" "--web.listen-address=$HOST:$P" >"$TMP/node_exporter.log" 2>&1 </dev/null &
node_pid=$!
trap 'stop_all; kill "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do
    [ "$(http_status "http://$HOST:$P/metrics")" = 200 ] && break
    alive "$node_pid" || break
    sleep 0.2
done
[ "$(http_status "http://$HOST:$P/metrics")" = 200 ] ||
    { echo "emulation: FAIL: node_exporter did not answer on $HOST:$P: $(tail -n 3 "$TMP/node_exporter.log" | one_line)"; exit 1; }
ok "node_exporter ($NODE_EXPORTER) answers on $HOST:$P"

results=()
rc=0
for t in "${targets[@]}"; do
    start=$SECONDS
    printf '\n==> %s\n' "$t"
    if [ "${EMULATION_SKIP_BUILD:-0}" != 1 ] && ! bash "$ROOT/scripts/build-static.sh" --target "$t"; then
        results+=("FAIL  $t: scripts/build-static.sh --target $t failed ($((SECONDS - start))s)")
        rc=1
        continue
    fi
    emu_start=$SECONDS
    if emulate "$t"; then
        results+=("ok    $t: --version, its client via x86-64 proxy, its proxy for x86-64 client, exit 0 on SIGTERM ($((SECONDS - emu_start))s to run, $((SECONDS - start))s in all)")
    else
        results+=("FAIL  $t ($((SECONDS - start))s)")
        rc=1
    fi
done
printf '\n'
printf '%s\n' "${results[@]}"
if [ "$rc" = 0 ]; then echo "emulation: PASS ($((SECONDS - START))s)"; else echo "emulation: FAIL ($((SECONDS - START))s)"; fi
exit "$rc"
