#!/usr/bin/env bash
# Checks the static binaries of one target in target/static/TRIPLE/ (scripts/build-static.sh
# builds them, then runs this): the client at most 2 MiB and the proxy at most 3 MiB (it carries
# the TLS server, the web config's YAML and bcrypt), statically linked (`file`; no program
# interpreter and no shared library needed, per `readelf`; outside the x86-64 static PIE no
# dynamic section at all), runs with an empty environment (`env -i ... --version`, `--help`),
# and keeps TLS: the client polls a local https server through rustls when given our test CA by
# --tls.cacert or SSL_CERT_FILE (and refuses it with only the system's CA bundle), and the
# static proxy serves https to the static client, relaying one scrape. Binaries of other
# architectures run under qemu-user, as the oldest CPU the target promises (scripts/lib.sh's
# static_run: an ARMv6 binary on an ARM1176, a MIPS one on a 24Kc without FPU).
#
#   scripts/static-checks.sh TRIPLE
#   STATIC_MAX_BYTES=2500000 scripts/static-checks.sh TRIPLE   one size budget for both binaries
#
# Ends with one line per binary, such as
#   pushprox-proxy: 1.23 MiB (1290240 bytes), static, runs with empty env, TLS (rustls) ok
# and exits non-zero when any check fails. What it starts listens on 127.0.0.1 only and is
# stopped on exit. Needs file, binutils, openssl, python3 (scripts/static-toolchain.sh).
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$#" = 1 ] || { echo "usage: $0 TRIPLE (one of: ${STATIC_TARGETS[*]})" >&2; exit 2; }
TARGET=$1
static_target "$TARGET" || exit 2
BINS=(pushprox-proxy pushprox-client)
die() {
    printf '%s: %s\n' "$SCRIPT" "$*" >&2
    exit 1
}
# budget BIN: its size budget in bytes.
budget() {
    if [ -n "${STATIC_MAX_BYTES:-}" ]; then
        echo "$STATIC_MAX_BYTES"
    elif [ "$1" = pushprox-proxy ]; then
        echo $((3 * 1024 * 1024))
    else
        echo $((2 * 1024 * 1024))
    fi
}
out=${CARGO_TARGET_DIR:-$ROOT/target}/static/$TARGET
for b in "${BINS[@]}"; do
    [ -f "$out/$b" ] || die "$out/$b is missing (scripts/build-static.sh --target $TARGET builds it)"
done
static_run "$TARGET" "$out/pushprox-client" || die "$QEMU is missing (scripts/static-toolchain.sh $TARGET installs it)"

# --- size, static linking, an empty environment -------------------------------------------------

tmp=$(mktemp -d) || exit 1
trap 'stop_all; rm -rf "$tmp"' EXIT
proxy=$out/pushprox-proxy
client=$out/pushprox-client

failed=0
declare -A notes
# note BIN TEXT: adds TEXT to BIN's summary line.
note() { notes[$1]="${notes[$1]:-}, $2"; }
# fail BIN TEXT: the same, and the script will exit 1.
fail() {
    note "$1" "FAILED: $2"
    failed=1
}

for b in "${BINS[@]}"; do
    bin=$out/$b
    bytes=$(stat -c %s "$bin")
    limit=$(budget "$b")
    [ "$bytes" -le "$limit" ] ||
        fail "$b" "over the budget of $limit bytes by $((bytes - limit)) bytes"

    info=$(file -b "$bin")
    case "$info" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) fail "$b" "file says: $info" ;;
    esac
    if [ "${#RUN[@]}" -eq 0 ]; then
        # glibc's ldd says "not a dynamic executable" (static) or "statically linked" (static-pie).
        lddout=$(ldd "$bin" 2>&1)
        case "$lddout" in
            *"not a dynamic executable"* | *"statically linked"*) ;;
            *) fail "$b" "ldd lists: $(printf '%s' "$lddout" | one_line)" ;;
        esac
    fi
    # readelf reads every architecture: no program interpreter, no shared library needed, and
    # outside the x86-64 static PIE (whose dynamic section only lists its relocations) no
    # dynamic section at all.
    readelf -lW "$bin" | grep -q 'INTERP' && fail "$b" "it has a program interpreter (readelf -l)"
    dyn=$(readelf -dW "$bin" 2>&1)
    printf '%s\n' "$dyn" | grep -q '(NEEDED)' &&
        fail "$b" "it needs shared libraries: $(printf '%s\n' "$dyn" | grep '(NEEDED)' | one_line)"
    if [ "$TARGET" != x86_64-unknown-linux-musl ]; then
        case "$dyn" in
            *"no dynamic section"*) ;;
            *) fail "$b" "it has a dynamic section (readelf -d)" ;;
        esac
    fi

    runs=1
    for arg in --version --help; do
        if ! text=$(cd "$tmp" && env -i "${RUN[@]}" "$bin" "$arg" 2>&1); then
            fail "$b" "env -i $b $arg exited non-zero: $(printf '%s' "$text" | head -n 3 | one_line)"
            runs=0
        elif [ "$arg" = --version ]; then
            case "$text" in
                "$b "*) say "$(printf '%s' "$text" | head -n 1): $info" ;;
                *) fail "$b" "--version printed \"$text\"" && runs=0 ;;
            esac
        fi
    done
    [ "$runs" = 1 ] && note "$b" "static, runs with empty env"
done

# --- TLS ----------------------------------------------------------------------------------------

# A CA and a server certificate for 127.0.0.1 signed by it (rustls refuses a CA certificate as
# a server's, which is what a bare `openssl req -x509` makes), by lib.sh's ssl_ca and
# ssl_signed; their failure ends the script here, not as a note of a binary.
(
    TMP=$tmp
    fail() { die "$*"; }
    ssl_ca ca "pushprox static check CA"
    ssl_signed ca server 127.0.0.1 IP:127.0.0.1 serverAuth
) || exit 1

# wait_line LOG PATTERN PID: waits up to 20 s (emulated, on a busy machine), while PID lives,
# for a line of LOG matching the extended regex PATTERN, and prints it.
wait_line() {
    local line
    for _ in $(seq 200); do
        line=$(grep -s -m 1 -E -- "$2" "$1") && { printf '%s\n' "$line"; return 0; }
        alive "$3" || break
        sleep 0.1
    done
    grep -s -m 1 -E -- "$2" "$1"
}

# 1. The client against an https server that answers every request with 200 text/html. The
#    client reports that as "answered status 200 but the body is not a scrape request", which
#    only a completed handshake can bring back. openssl s_server -www would do, but it answers
#    GET only, and a poll is a POST.
cat >"$tmp/https_server.py" <<'PY'
import http.server, ssl, sys

class Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>not a PushProx proxy</body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, fmt, *args):
        print("request:", fmt % args, flush=True)

server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = tls.wrap_socket(server.socket, server_side=True)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
PY
start_bg https-server "$tmp/server.log" python3 "$tmp/https_server.py" "$tmp/server.crt" "$tmp/server.key"
port=$(wait_line "$tmp/server.log" '^listening' "$LAST_PID" | awk '{ print $2 }')
[ -n "$port" ] || die "the test https server did not start: $(tail -n 3 "$tmp/server.log" | one_line)"

# poll_once LOG [FLAG...]: runs the static client, with an empty environment (plus the
# VAR=value words of the array poll_env), against that server until its log shows how the
# first poll went; 20 s at most.
poll_env=()
poll_once() {
    local log=$1
    shift
    start_bg pushprox-client "$log" timeout 20 env -i "${poll_env[@]}" "${RUN[@]}" "$client" \
        --proxy-url "https://127.0.0.1:$port/" --fqdn static-check.invalid \
        --metrics-addr 127.0.0.1:0 --proxy.retry.initial-wait 5s "$@"
    local pid=$LAST_PID
    wait_line "$log" 'poll of' "$pid" >/dev/null
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

client_tls=1
# Without --tls.cacert the client trusts the system's CA bundle (it has no roots built in),
# which does not hold our CA: it must refuse the server. On a host without any CA bundle it
# refuses to start, naming --tls.cacert and SSL_CERT_FILE.
poll_once "$tmp/client-untrusting.log"
if grep -qi 'certificate' "$tmp/client-untrusting.log" && ! grep -q 'POST /poll' "$tmp/server.log"; then
    say "client without --tls.cacert: $(grep -m 1 -o 'poll of.*' "$tmp/client-untrusting.log" | cut -c 1-150)"
else
    fail pushprox-client "without --tls.cacert it did not refuse a server of an unknown CA (log: $(tail -n 2 "$tmp/client-untrusting.log" | one_line))"
    client_tls=0
fi
poll_once "$tmp/client-trusting.log" --tls.cacert "$tmp/ca.crt"
if grep -q 'POST /poll' "$tmp/server.log" && grep -q 'status 200' "$tmp/client-trusting.log"; then
    say "client with --tls.cacert: $(grep -m 1 -o 'poll of.*' "$tmp/client-trusting.log" | cut -c 1-150)…"
else
    fail pushprox-client "its poll did not get through TLS to a local https server (client: $(tail -n 2 "$tmp/client-trusting.log" | one_line); server: $(tail -n 2 "$tmp/server.log" | one_line))"
    client_tls=0
fi
# SSL_CERT_FILE replaces the system's bundle, as for Go programs and OpenSSL.
poll_env=("SSL_CERT_FILE=$tmp/ca.crt")
poll_once "$tmp/client-ssl-cert-file.log"
poll_env=()
if grep -q 'status 200' "$tmp/client-ssl-cert-file.log"; then
    say "client with SSL_CERT_FILE: trusts the CA in it"
else
    fail pushprox-client "with SSL_CERT_FILE naming our CA its poll did not get through TLS (client: $(tail -n 2 "$tmp/client-ssl-cert-file.log" | one_line))"
    client_tls=0
fi

# 2. The static proxy serving https, the static client polling it, and one scrape of the
#    client's own /metrics relayed through both: TLS on the proxy's side too, and a whole
#    poll, scrape and push under musl.
proxy_tls=1
metrics_port=$(free_port 127.0.0.1) || die "no free port for the client's metrics"
start_bg pushprox-proxy "$tmp/proxy.log" env -i "${RUN[@]}" "$proxy" -l 127.0.0.1:0 \
    --tls.cert "$tmp/server.crt" --tls.key "$tmp/server.key"
proxy_pid=$LAST_PID
proxy_addr=$(wait_line "$tmp/proxy.log" 'listening address=[^ ]+ scheme=https' "$proxy_pid" |
    sed -E 's/.*listening address=([^ ]+).*/\1/')
if [ -z "$proxy_addr" ]; then
    fail pushprox-proxy "it did not start serving https (log: $(tail -n 3 "$tmp/proxy.log" | one_line))"
    proxy_tls=0
else
    start_bg pushprox-client "$tmp/client-proxy.log" env -i "${RUN[@]}" "$client" \
        --proxy-url "https://$proxy_addr/" --tls.cacert "$tmp/ca.crt" \
        --fqdn 127.0.0.1 --metrics-addr "127.0.0.1:$metrics_port"
    if wait_line "$tmp/proxy.log" 'client registered"? fqdn=127\.0\.0\.1' "$proxy_pid" >/dev/null; then
        if scrape=$(
            python3 - "$proxy_addr" "$tmp/ca.crt" "http://127.0.0.1:$metrics_port/metrics" <<'PY'
import http.client, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
conn = http.client.HTTPSConnection(
    host, int(port), context=ssl.create_default_context(cafile=sys.argv[2]), timeout=5)
conn.request("GET", sys.argv[3], headers={"X-Prometheus-Scrape-Timeout-Seconds": "4"})
answer = conn.getresponse()
body = answer.read().decode(errors="replace")
print(answer.status, "with", body.count("# TYPE "), "metric families")
sys.exit(0 if answer.status == 200 and "# TYPE " in body else 1)
PY
        ); then
            say "scrape through the https proxy: $scrape"
        else
            fail pushprox-proxy "a scrape through it over https failed: ${scrape:-no answer}"
            proxy_tls=0
        fi
    else
        fail pushprox-proxy "the static client did not register over https (proxy: $(tail -n 2 "$tmp/proxy.log" | one_line); client: $(tail -n 2 "$tmp/client-proxy.log" | one_line))"
        proxy_tls=0
        client_tls=0
    fi
fi
stop_all
[ "$proxy_tls" = 1 ] && note pushprox-proxy "TLS (rustls) ok"
[ "$client_tls" = 1 ] && note pushprox-client "TLS (rustls) ok"

# --- summary ------------------------------------------------------------------------------------

echo
for b in "${BINS[@]}"; do
    bytes=$(stat -c %s "$out/$b")
    echo "$b: $(awk -v n="$bytes" 'BEGIN { printf "%.2f", n / 1048576 }') MiB ($bytes bytes)${notes[$b]:-}"
done
echo "checked $TARGET${RUN[0]:+ under ${RUN[*]}}; binaries in $out"
exit "$failed"
