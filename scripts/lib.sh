# shellcheck shell=bash disable=SC2034  # LAST_PID, FAIL_REASON are read by the scripts
# Shell helpers shared by the scripts: failing with a reason, finding or building the binaries,
# free loopback ports, starting processes in the background and stopping them on exit, bounded
# waits, the end-to-end frame, certificates and bcrypt hashes, Debian packages.
# Source it; it is not a script of its own:  . "$(dirname "$0")/lib.sh"
#
# Everything here talks to 127.0.0.0/8 only, and every wait has a time limit.

# A proxy from the environment would catch our loopback requests (curl's, and the clients' own).
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT=$(basename "$0" .sh)

# Secrets (passwords made up for a test) that must never be printed: say, warn and redact
# replace each with ***. Add one with SECRETS+=("$PW") before anything could print it.
SECRETS=()

# masked TEXT: prints TEXT with every secret replaced by ***.
masked() {
    local t=$1 s
    for s in "${SECRETS[@]}"; do [ -n "$s" ] && t=${t//"$s"/***}; done
    printf '%s' "$t"
}

# redact: copies stdin to stdout with every secret replaced by *** (for logs, command output).
redact() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "$(masked "$line")"
    done
}

# script_help: prints the comment at the top of the running script (from its second line to
# the line before `set -uo pipefail`), without the comment marks: its --help.
script_help() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# script_flag FLAG [ARG]: for a script that takes at most the one flag FLAG: succeeds when ARG
# is FLAG, fails when there is no ARG; -h or --help prints script_help and exits 0, anything
# else prints the usage and exits 2.
script_flag() {
    case "${2:-}" in
        "$1") return 0 ;;
        "") return 1 ;;
        -h | --help) script_help; exit 0 ;;
        *) echo "usage: $0 [$1]" >&2; exit 2 ;;
    esac
}

say() { printf '%s: %s\n' "$SCRIPT" "$(masked "$*")"; }

# fail REASON: exit 1, with FAIL_REASON set for the script's EXIT trap to report (e2e_harness's
# does).
FAIL_REASON=""
fail() {
    FAIL_REASON=$*
    exit 1
}
warn() { printf '%s: warning: %s\n' "$SCRIPT" "$(masked "$*")" >&2; }

# one_line: joins the lines of stdin with ", ".
one_line() { paste -sd, - | sed 's/,/, /g'; }

# need CMD [HINT]: fail early, with a hint, when a tool the script runs is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    printf '%s: %s not found%s\n' "$SCRIPT" "$1" "${2:+ ($2)}" >&2
    return 1
}

# first_command NAME...: prints the first of NAMEs that is on PATH (packages name binaries
# differently: Debian's prometheus-node-exporter is upstream's node_exporter).
first_command() {
    local c
    for c in "$@"; do
        command -v "$c" 2>/dev/null && return 0
    done
    return 1
}

# pushprox_bins: sets PROXY_BIN and CLIENT_BIN. Uses $PUSHPROX_BIN_DIR when set (test.sh and
# people who built elsewhere), else builds the release binaries, which is what users run.
pushprox_bins() {
    local dir
    if [ -n "${PUSHPROX_BIN_DIR:-}" ]; then
        # Absolute, as systemd units and scripts that change directory need it.
        dir=$(cd "$PUSHPROX_BIN_DIR" 2>/dev/null && pwd) ||
            { printf '%s: PUSHPROX_BIN_DIR=%s is not a directory\n' "$SCRIPT" "$PUSHPROX_BIN_DIR" >&2; return 1; }
    else
        need cargo "install Rust with rustup, or set PUSHPROX_BIN_DIR" || return 1
        say "building the release binaries (cargo build --release)"
        local start=$SECONDS
        (cd "$ROOT" && cargo build --release -q --bin pushprox-proxy --bin pushprox-client) || return 1
        say "built in $((SECONDS - start))s"
        dir=${CARGO_TARGET_DIR:-$ROOT/target}/release
    fi
    PROXY_BIN=$dir/pushprox-proxy
    CLIENT_BIN=$dir/pushprox-client
    local b
    for b in "$PROXY_BIN" "$CLIENT_BIN"; do
        [ -x "$b" ] || { printf '%s: %s is missing or not executable\n' "$SCRIPT" "$b" >&2; return 1; }
    done
}

# free_port [HOST...]: prints one TCP port that is free on every HOST (default 127.0.0.1).
# free_ports N: prints N distinct free ports on 127.0.0.1, one a line.
# The ports are drawn below the kernel's ephemeral range (net.ipv4.ip_local_port_range), so
# nothing that binds port 0 (a client's --metrics-addr 127.0.0.1:0) or connects out can be handed
# one between our check and the caller's bind: a CI run lost shards-e2e to exactly that.
free_port() { _free_ports 1 "$@"; }
free_ports() { _free_ports "$1"; }
_free_ports() {
    python3 - "$@" <<'PY'
import random, socket, sys
count, hosts = int(sys.argv[1]), sys.argv[2:] or ["127.0.0.1"]
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
except OSError:
    ephemeral_low = 32768
low = 10000 if ephemeral_low > 12000 else 1024
held, ports = [], []
for port in random.sample(range(low, ephemeral_low), min(4000, ephemeral_low - low)):
    socks = []
    try:
        for h in hosts:
            s = socket.socket()
            socks.append(s)
            s.bind((h, port))
    except OSError:
        for s in socks:
            s.close()
        continue
    held += socks
    ports.append(port)
    if len(ports) == count:
        break
for s in held:
    s.close()
if len(ports) < count:
    sys.exit("no %d ports free on all of %s" % (count, " ".join(hosts)))
print("\n".join(map(str, ports)))
PY
}

# Background processes, stopped by stop_all (run it from an EXIT trap).
PIDS=()
NAMES=()
LOGS=()

# start_bg NAME LOGFILE CMD [ARG...]: starts CMD in the background, output to LOGFILE.
start_bg() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
    LOGS+=("$log")
    LAST_PID=$!
}

# alive PID: is that process still running?
alive() { kill -0 "$1" 2>/dev/null; }

# term_wait PID...: SIGTERM to each of these processes, then up to 5 s for all of them to end.
term_wait() {
    local pid n left
    for pid in "$@"; do
        alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    for ((n = 0; n < 50; n++)); do
        left=0
        for pid in "$@"; do alive "$pid" && left=1; done
        [ "$left" = 0 ] && return 0
        sleep 0.1
    done
}

# stop_pids PID...: stops these processes (TERM, then KILL after 5 s).
stop_pids() {
    local pid
    term_wait "$@"
    for pid in "$@"; do
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    return 0
}

# stop_all: SIGTERM to each process we started, SIGKILL to any still there after 5 s.
stop_all() {
    local i pid
    term_wait "${PIDS[@]}"
    for i in "${!PIDS[@]}"; do
        pid=${PIDS[$i]}
        if alive "$pid"; then
            warn "${NAMES[$i]} (pid $pid) ignored SIGTERM for 5 s: killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    PIDS=()
    return 0
}

# dump_logs: the last lines of every log, for a failure report, secrets masked.
dump_logs() {
    local i
    for i in "${!LOGS[@]}"; do
        printf '\n----- %s: %s (last 40 lines) -----\n' "${NAMES[$i]}" "${LOGS[$i]}"
        tail -n 40 "${LOGS[$i]}" 2>/dev/null | redact
    done
    echo
}

# http_status URL [CURL_ARG...]: prints the status code, 000 when nothing answered.
http_status() {
    local url=$1
    shift
    curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" 2>/dev/null || true
}

# wait_http NAME PID URL SECONDS [CURL_ARG...]: waits until URL answers 200 (to curl with the
# CURL_ARGs, such as --cacert FILE), while process PID lives.
wait_http() {
    local name=$1 pid=$2 url=$3 secs=$4 code=000
    shift 4
    local deadline=$((SECONDS + secs))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! alive "$pid"; then
            wait "$pid"
            FAIL_REASON="$name exited with status $? before it was ready ($url)"
            return 1
        fi
        code=$(http_status "$url" "$@")
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    FAIL_REASON="$name not ready within ${secs}s: $url last answered $code"
    return 1
}

# retry TRIES PAUSE CMD [ARG...]: runs CMD (in this shell, so it may set variables) until it
# succeeds, at most TRIES times, PAUSE seconds apart; succeeds when CMD did.
retry() {
    local tries=$1 pause=$2 n
    shift 2
    for ((n = 1; n <= tries; n++)); do
        "$@" && return 0
        [ "$n" -lt "$tries" ] && sleep "$pause"
    done
    return 1
}

# prom_query PROM_URL QUERY: runs an instant query against the Prometheus HTTP API and prints
# one line per series: "<instance> <value>", sorted. Fails on an API error.
prom_query() {
    curl -sS --max-time 3 -G --data-urlencode "query=$2" "$1/api/v1/query" |
        python3 -c '
import json, sys
r = json.load(sys.stdin)
if r.get("status") != "success":
    sys.exit("query failed: %s" % r.get("error"))
for s in sorted(r["data"]["result"], key=lambda s: s["metric"].get("instance", "")):
    print(s["metric"].get("instance", "-"), s["value"][1])
'
}

# scrape_failure_causes SINCE MATCH ACCESS_LOG LOG...: prints "RESTART SLOW", the failed scrapes
# since the epoch time SINCE, of the FQDNs whose lines contain MATCH, that the logs explain. RESTART: a scrape no proxy took (the proxies' "no
# poll of it arrived", "no client polled"; nginx's own 404, 502 or 503 to a scrape in
# ACCESS_LOG, which may be absent), what a restart costs. SLOW: a scrape too slow for its
# timeout on a busy machine (the client's target timed out, no push in time, a push cut at the
# deadline, the scraper gone before the relay ended): each such failure leaves at least one
# line in the proxies' or clients' LOGs.
scrape_failure_causes() {
    python3 - "$@" <<'PY'
import datetime, os, re, sys
since, match, access, logs = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
restart = slow = 0
def epoch(ts, form):
    return datetime.datetime.strptime(ts, form).replace(tzinfo=datetime.timezone.utc).timestamp()
for name in logs:
    for line in open(name, errors="replace"):
        m = re.match(r'ts=(\S+) level=warn msg="(.*)', line)
        if not m or match not in line or epoch(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ") < since:
            continue
        text = m.group(2)
        if text.startswith("scrape failed") and ("no poll of it arrived" in text or "no client polled" in text):
            restart += 1
        elif (text.startswith("scrape failed") and "sent no answer" in text) or \
                (text.startswith("relay failed") and ("time-out" in text or "scraper went away" in text)) or \
                (text.startswith("scrape of ") and "timed out" in text):
            slow += 1
for line in open(access, errors="replace") if os.path.exists(access) else []:
    m = re.search(r'\[(\S+) \+0000\] "GET http://\S+ HTTP/1.1" (\d+)', line)
    if m and match in line and m.group(2) in ("404", "502", "503") and epoch(m.group(1), "%d/%b/%Y:%H:%M:%S") >= int(since):
        restart += 1
print(restart, slow)
PY
}

# e2e_harness: the frame of an end-to-end script (e2e.sh, web-config-e2e.sh, shards-e2e.sh).
# Defines ok TEXT (a passed check, with the seconds since the start) and fail REASON (exit 1),
# and on exit stops every process started here, then says "PASS (Ns; $PASS_DETAIL)" when the
# script set PASSED=1 (removing $TMP unless E2E_KEEP_TMP is set), else prints the logs (and
# whatever an e2e_failure_extra function of the script adds), keeps $TMP and says
# "FAIL: reason". Also wait_query QUERY WANT SECONDS: until prom_query on $PROM prints
# exactly WANT, else fail. Call it once, before anything is started.
e2e_harness() {
    TMP=""
    PASSED=0
    FAIL_REASON=""
    PASS_DETAIL=""
    START=$SECONDS
    ok() { say "ok ($((SECONDS - START))s): $*"; }
    wait_query() {
        local got="" deadline=$((SECONDS + $3))
        while [ "$SECONDS" -lt "$deadline" ]; do
            got=$(prom_query "$PROM" "$1" 2>&1)
            [ "$got" = "$2" ] && return 0
            sleep 0.5
        done
        fail "$1 after $3s is [$(one_line <<<"$got")], want [$(one_line <<<"$2")]"
    }
    e2e_finish() {
        local rc=$?
        trap - EXIT INT TERM
        stop_all
        if [ "$rc" = 0 ] && [ "$PASSED" = 1 ]; then
            say "PASS ($((SECONDS - START))s${PASS_DETAIL:+; $PASS_DETAIL})"
            if [ -n "${E2E_KEEP_TMP:-}" ]; then say "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
            exit 0
        fi
        if [ -n "$TMP" ]; then
            dump_logs
            declare -F e2e_failure_extra >/dev/null && e2e_failure_extra
            say "logs, config and data kept in $TMP"
        fi
        say "FAIL: ${FAIL_REASON:-exit code $rc}"
        exit 1
    }
    trap e2e_finish EXIT
    trap 'FAIL_REASON="interrupted"; exit 1' INT TERM
}

# start_prometheus: a Prometheus on 127.0.0.1:$PROM_PORT scraping every second (timeout 1 s)
# with the scrape_configs read from stdin, written to $TMP/prometheus.yml and checked by
# promtool first; its data in $TMP/data. Waits until it is ready (30 s), else fails.
start_prometheus() {
    {
        printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n'
        cat
    } >"$TMP/prometheus.yml"
    promtool check config "$TMP/prometheus.yml" >"$TMP/promtool.log" 2>&1 ||
        fail "promtool check config: $(redact <"$TMP/promtool.log")"
    start_bg prometheus "$TMP/prometheus.log" prometheus --config.file="$TMP/prometheus.yml" \
        --storage.tsdb.path="$TMP/data" --web.listen-address="127.0.0.1:$PROM_PORT"
    wait_http prometheus "$LAST_PID" "http://127.0.0.1:$PROM_PORT/-/ready" 30 || fail "$FAIL_REASON"
}
# go_pushprox_bins: GO_DIR holding the Go PushProx v0.2.0 pushprox-proxy and pushprox-client:
# $PUSHPROX_GO_BIN_DIR, else target/go-pushprox, built there by ../shared/tools/build-go-pushprox.sh
# (about 20 s) when missing. Sets GO_PROXY and GO_CLIENT; fails with what to do.
go_pushprox_bins() {
    if [ -n "${PUSHPROX_GO_BIN_DIR:-}" ]; then
        GO_DIR=$PUSHPROX_GO_BIN_DIR
    else
        GO_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/go-pushprox
        if [ ! -x "$GO_DIR/pushprox-client" ] || [ ! -x "$GO_DIR/pushprox-proxy" ]; then
            local builder=$ROOT/../shared/tools/build-go-pushprox.sh log
            [ -x "$builder" ] || fail "no Go PushProx: set PUSHPROX_GO_BIN_DIR, or provide $builder"
            say "building the Go PushProx v0.2.0 ($builder)"
            mkdir -p "$GO_DIR"
            log=$GO_DIR/build.log
            "$builder" "$GO_DIR" >"$log" 2>&1 || fail "Go build failed: $(tail -5 "$log")"
        fi
    fi
    GO_PROXY=$GO_DIR/pushprox-proxy
    GO_CLIENT=$GO_DIR/pushprox-client
    [ -x "$GO_CLIENT" ] || fail "$GO_CLIENT is missing"
}


# e2e_prelude NAME [TOOL...]: after e2e_harness, fails unless curl, python3, Prometheus and
# promtool, node_exporter (NODE_EXPORTER) and the TOOLs are installed and the pushprox binaries
# are found (PROXY_BIN, CLIENT_BIN); then makes TMP, a fresh pushprox-NAME.XXXXXX directory.
e2e_prelude() {
    local name=$1 tool
    shift
    for tool in curl python3 "$@"; do need "$tool" "apt-get install $tool" || fail "$tool is missing"; done
    need prometheus "apt-get install prometheus" || fail "prometheus is missing"
    need promtool "apt-get install prometheus" || fail "promtool is missing"
    NODE_EXPORTER=$(first_command prometheus-node-exporter node_exporter) ||
        fail "node_exporter is missing (apt-get install prometheus-node-exporter)"
    pushprox_bins || fail "no pushprox binaries"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/pushprox-$name.XXXXXX") || fail "cannot make a temporary directory"
}

# ssl ARGS...: openssl ARGS in $TMP, its output kept in $TMP/openssl.log for a failure report.
ssl() { (cd "$TMP" && openssl "$@") >>"$TMP/openssl.log" 2>&1 || fail "openssl $1 failed: $(tail -3 "$TMP/openssl.log")"; }

# ssl_ca NAME CN: a self-signed CA in $TMP, NAME.key (P-256) and NAME.crt, subject CN.
ssl_ca() {
    ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -subj "/CN=$2" -days 2 -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.crt"
}

# ssl_signed CA NAME CN SUBJECT_ALT_NAME [EXTENDED_KEY_USAGE]: NAME.key (P-256) and NAME.crt
# in $TMP, signed by the CA of ssl_ca CA, CA:FALSE.
ssl_signed() {
    local ca=$1 name=$2 cn=$3 san=$4 eku=${5:-}
    ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key"
    ssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
    {
        printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$san"
        [ -z "$eku" ] || printf 'extendedKeyUsage=%s\n' "$eku"
    } >"$TMP/$name.ext"
    ssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 2 \
        -extfile "$name.ext" -out "$name.crt"
}

# nginx_conf DIR CONNECTIONS: prints an nginx.conf for an nginx run in the foreground by this
# user, one process of CONNECTIONS connections, its pid file, logs and temporary files in DIR
# (error.log, access.log, temp/), and inside its http block the lines read from stdin.
nginx_conf() {
    local dir=$1
    mkdir -p "$dir/temp"
    cat <<EOF
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections $2; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/temp/body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
$(cat)
}
EOF
}

# bcrypt_hash USER PASSWORD: the bcrypt hash of cost 10 (after USER:), by htpasswd when it is
# installed, else by $PROXY_BIN --hash-password.
bcrypt_hash() {
    if command -v htpasswd >/dev/null 2>&1; then
        htpasswd -nbBC 10 "$1" "$2" | cut -d: -f2-
    else
        printf %s "$2" | "$PROXY_BIN" --hash-password "$1" | cut -d: -f2-
    fi
}

# unit_command UNIT [ENVFILE]: prints, one word a line, the command systemd would run for the
# ExecStart= of the service file UNIT: its Environment= values, then those of ENVFILE (in place
# of the unit's EnvironmentFile=, which is used when ENVFILE is not given), expanded as systemd
# does (${VAR} stays one word, a word that is exactly $VAR splits at white space). Fails on a
# unit without exactly one ExecStart=, or a variable that is set nowhere.
unit_command() {
    python3 - "$@" <<'PY'
import re, shlex, sys

unit = sys.argv[1]
env, env_files, execs, section = {}, [], [], None
for raw in open(unit, encoding="utf-8"):
    line = raw.strip()
    if not line or line[0] in "#;":
        continue
    if line.startswith("["):
        section = line
        continue
    if section != "[Service]" or "=" not in line:
        continue
    key, value = (s.strip() for s in line.split("=", 1))
    if key == "Environment":
        for word in shlex.split(value):
            name, _, val = word.partition("=")
            env[name] = val
    elif key == "EnvironmentFile":
        env_files.append(value)
    elif key == "ExecStart":
        execs.append(value)
if len(sys.argv) > 2:
    env_files = [sys.argv[2]]
for path in env_files:
    optional = path.startswith("-")
    try:
        lines = open(path.lstrip("-"), encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        if optional:
            continue
        raise
    for line in lines:
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        name, val = (s.strip() for s in line.split("=", 1))
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        env[name] = val
if len(execs) != 1:
    sys.exit("%s: %d ExecStart= lines, want 1" % (unit, len(execs)))

def value(name):
    if name not in env:
        sys.exit("%s: $%s is set neither in the unit nor in its environment file" % (unit, name))
    return env[name]

for word in shlex.split(execs[0]):
    whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
    if whole:
        for part in value(whole.group(1)).split():
            print(part)
    else:
        print(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: value(m.group(1)), word))
PY
}

# apt_install PACKAGE...: installs Debian packages (as root): one `apt-get update`, then the
# install, waiting for dpkg's lock while other installs hold it. Fails with the command to
# run when not root. Services the packages bring are not started (policy-rc.d), as the tests
# start their own copies.
apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        printf '%s: missing %s: install them as root (Debian: apt-get install %s)\n' "$SCRIPT" "$*" "$*" >&2
        return 1
    fi
    say "installing $*"
    local apt=(apt-get -o DPkg::Lock::Timeout=900) policy=0 rc=0
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1
    fi
    # A mirror being synced can fail the update of one architecture's index while the others
    # are fine; the install then tells whether what we need was there.
    "${apt[@]}" update -qq || warn "apt-get update reported errors; trying the install anyway"
    "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null || rc=1
    [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || { warn "apt-get install $* failed"; return 1; }
}

# The static Linux targets (scripts/build-static.sh), in the order of the Go release's
# architectures. STATIC_CI_TARGETS: one of each family, what CI builds and runs under qemu.
STATIC_TARGETS=(x86_64-unknown-linux-musl i686-unknown-linux-musl aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf armv5te-unknown-linux-musleabi
    mips-unknown-linux-musl mipsel-unknown-linux-musl mips64el-unknown-linux-muslabi64
    powerpc64le-unknown-linux-musl riscv64gc-unknown-linux-musl s390x-unknown-linux-musl)
STATIC_CI_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf s390x-unknown-linux-musl)

# static_target TRIPLE: sets what building and running TRIPLE takes. GO_ARCH: the Go release's
# name (pushprox-VERSION.linux-GO_ARCH.tar.gz); DEB_ARCH: Debian's architecture, of the .deb
# and of musl-dev (none: no .deb); GNU: the cross gcc's prefix; MUSL: musl's triplet (Debian's
# /usr/lib/MUSL and MUSL-gcc); MUSL_SRC: how musl is had when Debian's musl-dev does not fit
# ("" when it does; else musl's configure target and CFLAGS, musl then built from Debian's
# source package); UNWIND_GCC: the gcc whose libgcc_eh.a stands in for libunwind.a (11 where
# Debian has it: gcc 12's, but on ARM, calls glibc's _dl_find_object, which musl lacks; where
# it does not, 12's, given a _dl_find_object that finds nothing: see build-static.sh); QEMU and
# QEMU_CPU: the qemu-user that runs it, and the oldest CPU the target promises (qemu -cpu), so
# that an instruction newer than that fails the run; RELOC: rustc's relocation model (static:
# no PIE, see build-static.sh). Fails for an unknown TRIPLE.
static_target() {
    GO_ARCH="" DEB_ARCH="" GNU="" MUSL="" MUSL_SRC="" UNWIND_GCC=12 QEMU="" QEMU_CPU="" RELOC=static
    case "$1" in
        x86_64-unknown-linux-musl) GO_ARCH=amd64 DEB_ARCH=amd64 ;;
        i686-unknown-linux-musl)
            # Rust's i686 wants SSE2 (a Pentium 4), which qemu's default CPU has.
            GO_ARCH=386 DEB_ARCH=i386 GNU=i686-linux-gnu MUSL=i386-linux-musl QEMU=qemu-i386-static
            UNWIND_GCC=11 ;;
        aarch64-unknown-linux-musl)
            GO_ARCH=arm64 DEB_ARCH=arm64 GNU=aarch64-linux-gnu MUSL=aarch64-linux-musl
            UNWIND_GCC=11 QEMU=qemu-aarch64-static ;;
        armv7-unknown-linux-musleabihf)
            GO_ARCH=armv7 DEB_ARCH=armhf GNU=arm-linux-gnueabihf MUSL=arm-linux-musleabihf
            QEMU=qemu-arm-static QEMU_CPU=cortex-a7 ;;
        arm-unknown-linux-musleabihf)
            # Debian's armhf is ARMv7 (Thumb-2): musl for ARMv6 with VFP comes from source.
            GO_ARCH=armv6 GNU=arm-linux-gnueabihf MUSL=arm-linux-musleabihf
            MUSL_SRC="arm-linux-musleabihf -march=armv6 -mfpu=vfp -mfloat-abi=hard -marm"
            QEMU=qemu-arm-static QEMU_CPU=arm1176 ;;
        armv5te-unknown-linux-musleabi)
            GO_ARCH=armv5 DEB_ARCH=armel GNU=arm-linux-gnueabi MUSL=arm-linux-musleabi
            QEMU=qemu-arm-static QEMU_CPU=arm926 ;;
        mips-unknown-linux-musl)
            # Rust's 32-bit MIPS musl targets are soft-float (as OpenWrt's); Debian's are
            # hard-float, and Debian has no big-endian mips at all: musl from source.
            GO_ARCH=mips GNU=mips-linux-gnu MUSL=mips-linux-muslsf
            MUSL_SRC="mips-linux-muslsf -msoft-float -march=mips32r2"
            QEMU=qemu-mips-static QEMU_CPU=24Kc ;;
        mipsel-unknown-linux-musl)
            GO_ARCH=mipsle DEB_ARCH=mipsel GNU=mipsel-linux-gnu MUSL=mipsel-linux-muslsf
            MUSL_SRC="mipsel-linux-muslsf -msoft-float -march=mips32r2" UNWIND_GCC=11
            QEMU=qemu-mipsel-static QEMU_CPU=24Kc ;;
        mips64el-unknown-linux-muslabi64)
            # Position-independent code: with relocation-model=static LLVM builds addresses in
            # 32 bits, while n64 programs are linked above 4 GiB (0x120000000): it crashed at start.
            GO_ARCH=mips64le DEB_ARCH=mips64el GNU=mips64el-linux-gnuabi64 MUSL=mips64el-linux-musl
            UNWIND_GCC=11 QEMU=qemu-mips64el-static RELOC=pic ;;
        powerpc64le-unknown-linux-musl)
            GO_ARCH=ppc64le DEB_ARCH=ppc64el GNU=powerpc64le-linux-gnu MUSL=powerpc64le-linux-musl
            UNWIND_GCC=11 QEMU=qemu-ppc64le-static QEMU_CPU=power8 ;;
        riscv64gc-unknown-linux-musl)
            # Debian 12 has no riscv64 architecture: musl from source.
            GO_ARCH=riscv64 GNU=riscv64-linux-gnu MUSL=riscv64-linux-musl MUSL_SRC="riscv64-linux-musl"
            QEMU=qemu-riscv64-static ;;
        s390x-unknown-linux-musl)
            GO_ARCH=s390x DEB_ARCH=s390x GNU=s390x-linux-gnu MUSL=s390x-linux-musl UNWIND_GCC=11
            QEMU=qemu-s390x-static ;;
        *)
            printf '%s: unknown target %s; known: %s\n' "$SCRIPT" "$1" "${STATIC_TARGETS[*]}" >&2
            return 1 ;;
    esac
}

# musl_prefix TRIPLE: where scripts/static-toolchain.sh puts musl built from source for it.
musl_prefix() { echo "/usr/local/lib/pushprox-musl/$1"; }

# static_run TRIPLE [BIN]: sets RUN to what runs a binary of TRIPLE here (qemu-user with the
# target's oldest CPU; nothing for x86-64). i686 runs natively where the x86-64 kernel runs 32-bit
# programs (BIN --version tells): qemu-i386 crashes (SIGSEGV) a client that gets SIGTERM while
# its TLS connection closes, which the same binary run natively does not. Call static_target first.
static_run() {
    RUN=()
    [ -n "$QEMU" ] || return 0
    if [ "$1" = i686-unknown-linux-musl ] && [ -n "${2:-}" ] && [ "$(uname -m)" = x86_64 ] &&
        env -i "$2" --version >/dev/null 2>&1; then
        return 0
    fi
    RUN=("$(command -v "$QEMU")") || return 1
    [ -z "$QEMU_CPU" ] || RUN+=(-cpu "$QEMU_CPU")
}
