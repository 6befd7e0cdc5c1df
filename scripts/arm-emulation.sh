#!/usr/bin/env bash
# The ARM builds at work, under emulation: builds the static aarch64 and armv7 binaries
# (scripts/build-static.sh, which also checks them: static, size, empty environment, TLS), then
# runs them with Debian's qemu-user-static (qemu-aarch64-static ./bin; binfmt_misc is not needed)
# next to the x86-64 binaries of the workspace:
#   1. --version and --help of all four ARM binaries: exit 0, the right name and version, the
#      flags' text;
#   2. an aarch64 client and an armv7 client poll the x86-64 proxy, and a scrape of each one's
#      real node_exporter (Debian's prometheus-node-exporter) is relayed through them;
#   3. the aarch64 proxy, and the armv7 one, each relay a node_exporter scrape from an x86-64
#      client.
# The scraper is curl using the proxy as its HTTP proxy, as Prometheus does (proxy_url). Each
# relayed scrape must answer 200 with the metric families (# TYPE lines) that a direct fetch of
# the same node_exporter lists, node_exporter_build_info and node_cpu_seconds_total among them.
#
#   scripts/arm-emulation.sh                              builds the release binaries for x86-64
#   PUSHPROX_BIN_DIR=target/debug scripts/arm-emulation.sh   x86-64 binaries already built there
#   ARM_SKIP_BUILD=1 scripts/arm-emulation.sh    use target/static/<triple>/ as it is
#
# Installs (as root, apt-get) what is missing: qemu-user-static, prometheus-node-exporter, curl;
# build-static.sh installs the cross toolchain itself. Everything listens on 127.0.0.0/8 (the
# node_exporters on 127.0.0.2 and 127.0.0.3, so that each client scrapes its own FQDN), every
# wait is bounded, and whatever was started is stopped on exit. Ends with "arm-emulation: PASS"
# or "arm-emulation: FAIL: reason" and the logs, exit 0 or 1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

AARCH64=aarch64-unknown-linux-musl
ARMV7=armv7-unknown-linux-musleabihf
declare -A QEMU_OF=([$AARCH64]=qemu-aarch64-static [$ARMV7]=qemu-arm-static)
declare -A SHORT_OF=([$AARCH64]=aarch64 [$ARMV7]=armv7)
BINS=(pushprox-proxy pushprox-client)
START=$SECONDS

TMP=$(mktemp -d) || exit 1
cleanup() {
    stop_all
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "arm-emulation: FAIL: $*"
    dump_logs
    exit 1
}
ok() { echo "arm-emulation: ok: $*"; }

# --- what it needs ------------------------------------------------------------------------------

declare -A package_of=([qemu-aarch64-static]=qemu-user-static [qemu-arm-static]=qemu-user-static
    [curl]=curl [python3]=python3)
missing=()
for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${package_of[$cmd]}")
done
first_command prometheus-node-exporter node_exporter >/dev/null || missing+=(prometheus-node-exporter)
if [ "${#missing[@]}" -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; } ||
        fail "missing ${missing[*]} (Debian: apt-get install ${missing[*]})"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The test starts its own node_exporters: keep the package's service from starting.
    policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1
    fi
    apt-get -o DPkg::Lock::Timeout=600 update -qq || warn "apt-get update reported errors; trying the install anyway"
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    installed=$?
    [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$installed" = 0 ] || fail "apt-get install ${missing[*]} failed"
fi
NODE_EXPORTER=$(first_command prometheus-node-exporter node_exporter)

# --- the binaries -------------------------------------------------------------------------------

if [ "${ARM_SKIP_BUILD:-0}" != 1 ]; then
    for t in "$AARCH64" "$ARMV7"; do
        start=$SECONDS
        bash "$ROOT/scripts/build-static.sh" --target "$t" || fail "scripts/build-static.sh --target $t failed"
        ok "built and checked $t in $((SECONDS - start))s"
    done
fi
static_dir=${CARGO_TARGET_DIR:-$ROOT/target}/static
pushprox_bins || fail "no x86-64 binaries"
X86_PROXY=$PROXY_BIN
X86_CLIENT=$CLIENT_BIN
want_version=$("$X86_CLIENT" --version | head -n 1 | awk '{ print $2 }')

# --- 1. --version and --help under qemu ---------------------------------------------------------

# arm TRIPLE BIN: sets ARM to the command that runs the ARM binary BIN of TRIPLE under qemu,
# with an empty environment (a command, not a function: what start_bg stops is then qemu).
arm() { ARM=(env -i "$(command -v "${QEMU_OF[$1]}")" "$static_dir/$1/$2"); }
# What --help must mention, per binary: a flag of each.
declare -A help_mentions=([pushprox-proxy]=--web.listen-address [pushprox-client]=--proxy-url)
for t in "$AARCH64" "$ARMV7"; do
    for b in "${BINS[@]}"; do
        f=$static_dir/$t/$b
        [ -f "$f" ] || fail "$f is missing (run scripts/build-static.sh --target $t)"
        arm "$t" "$b"
        v=$(cd "$TMP" && timeout 30 "${ARM[@]}" --version 2>&1) ||
            fail "$t $b --version exited non-zero: $(printf '%s' "$v" | head -n 3 | one_line)"
        [ "$(printf '%s' "$v" | head -n 1)" = "$b $want_version" ] ||
            fail "$t $b --version printed \"$v\", not \"$b $want_version\""
        h=$(cd "$TMP" && timeout 30 "${ARM[@]}" --help 2>&1) ||
            fail "$t $b --help exited non-zero: $(printf '%s' "$h" | head -n 3 | one_line)"
        case "$h" in
            *"${help_mentions[$b]}"*) ;;
            *) fail "$t $b --help does not mention ${help_mentions[$b]}: $(printf '%s' "$h" | head -n 3 | one_line)" ;;
        esac
        ok "$t $b under ${QEMU_OF[$t]}: \"$v\", --help $(printf '%s\n' "$h" | wc -l) lines ($(file -b "$f" | cut -d, -f1-2))"
    done
done

# --- node_exporters and the scrape check ---------------------------------------------------------

P=$(free_port 127.0.0.2 127.0.0.3) || fail "no port free on 127.0.0.2 and 127.0.0.3"
for host in 127.0.0.2 127.0.0.3; do
    start_bg "node_exporter $host" "$TMP/node_exporter-$host.log" "$NODE_EXPORTER" \
        "--web.listen-address=$host:$P"
    wait_http "node_exporter $host" "$LAST_PID" "http://$host:$P/metrics" 20 || fail "$FAIL_REASON"
done
ok "node_exporters ($NODE_EXPORTER) answer on 127.0.0.2:$P and 127.0.0.3:$P"

# families FILE: the sorted metric family names of an exposition (its # TYPE lines).
families() { grep -E '^# TYPE ' "$1" | awk '{ print $3 }' | sort -u; }

# check_scrape WHAT PROXY_PORT HOST: scrapes http://HOST:P/metrics through the proxy on
# 127.0.0.1:PROXY_PORT, and compares it with a direct fetch of the same node_exporter.
check_scrape() {
    local what=$1 pport=$2 host=$3 code direct relayed
    direct=$TMP/direct-$host-$pport.txt relayed=$TMP/relayed-$host-$pport.txt
    code=$(curl -sS --max-time 15 -o "$relayed" -w '%{http_code}' -x "http://127.0.0.1:$pport" \
        -H 'X-Prometheus-Scrape-Timeout-Seconds: 10' "http://$host:$P/metrics" 2>"$TMP/curl.err") ||
        fail "$what: curl through the proxy failed: $(one_line <"$TMP/curl.err")"
    [ "$code" = 200 ] || fail "$what: the scrape answered $code: $(head -c 300 "$relayed" | one_line)"
    curl -sS --max-time 10 -o "$direct" "http://$host:$P/metrics" || fail "$what: direct fetch of $host:$P failed"
    local name
    for name in node_exporter_build_info node_cpu_seconds_total; do
        grep -q "^# HELP $name " "$relayed" || fail "$what: the relayed body has no HELP line for $name"
        grep -qE "^$name\{" "$relayed" || fail "$what: the relayed body has no sample of $name"
    done
    if ! diff <(families "$direct") <(families "$relayed") >"$TMP/families.diff"; then
        fail "$what: the relayed body's metric families differ from a direct fetch's: $(head -n 10 "$TMP/families.diff" | one_line)"
    fi
    ok "$what: status 200, $(wc -c <"$relayed") bytes, $(families "$relayed" | wc -l) metric families, the same as a direct fetch ($(wc -c <"$direct") bytes)"
}

# wait_client WHAT PROXY_PORT FQDN PID: waits up to 60 s until the proxy lists FQDN in /clients
# (qemu starts a binary in well under a second, but the machine may be busy).
wait_client() {
    local what=$1 pport=$2 fqdn=$3 pid=$4 n
    for ((n = 0; n < 300; n++)); do
        alive "$pid" || fail "$what exited before it registered (log: $(tail -n 3 "${LOGS[-1]}" | one_line))"
        curl -sS --max-time 2 "http://127.0.0.1:$pport/clients" 2>/dev/null |
            grep -q "\"$fqdn\"" && return 0
        sleep 0.2
    done
    fail "$what did not appear in the proxy's /clients within 60 s"
}

# --- 2. ARM clients, x86-64 proxy ---------------------------------------------------------------

mapfile -t ports < <(free_ports 5) || fail "no free ports"
xport=${ports[0]}
start_bg "x86-64 pushprox-proxy" "$TMP/x86-proxy.log" "$X86_PROXY" -l "127.0.0.1:$xport"
wait_http "x86-64 proxy" "$LAST_PID" "http://127.0.0.1:$xport/-/healthy" 20 || fail "$FAIL_REASON"
i=1
declare -A fqdn_of=([$AARCH64]=127.0.0.2 [$ARMV7]=127.0.0.3)
for t in "$AARCH64" "$ARMV7"; do
    what="${SHORT_OF[$t]} client via x86-64 proxy"
    arm "$t" pushprox-client
    start_bg "${SHORT_OF[$t]} pushprox-client" "$TMP/${SHORT_OF[$t]}-client.log" \
        "${ARM[@]}" --proxy-url "http://127.0.0.1:$xport/" --fqdn "${fqdn_of[$t]}" \
        --metrics-addr "127.0.0.1:${ports[$i]}"
    wait_client "$what" "$xport" "${fqdn_of[$t]}" "$LAST_PID"
    check_scrape "$what" "$xport" "${fqdn_of[$t]}"
    i=$((i + 1))
done

# --- 3. ARM proxies, x86-64 client --------------------------------------------------------------

for t in "$AARCH64" "$ARMV7"; do
    what="x86-64 client via ${SHORT_OF[$t]} proxy"
    pport=${ports[$i]}
    arm "$t" pushprox-proxy
    start_bg "${SHORT_OF[$t]} pushprox-proxy" "$TMP/${SHORT_OF[$t]}-proxy.log" "${ARM[@]}" -l "127.0.0.1:$pport"
    wait_http "${SHORT_OF[$t]} proxy" "$LAST_PID" "http://127.0.0.1:$pport/-/healthy" 60 || fail "$FAIL_REASON"
    start_bg "x86-64 pushprox-client for the ${SHORT_OF[$t]} proxy" "$TMP/x86-client-$pport.log" \
        "$X86_CLIENT" --proxy-url "http://127.0.0.1:$pport/" --fqdn 127.0.0.2 --metrics-addr 127.0.0.1:0
    wait_client "$what" "$pport" 127.0.0.2 "$LAST_PID"
    check_scrape "$what" "$pport" 127.0.0.2
    i=$((i + 1))
done

stop_all
echo "arm-emulation: PASS ($((SECONDS - START))s)"
