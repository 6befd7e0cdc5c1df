#!/usr/bin/env bash
# Mutual TLS in front of our proxy, with Debian's nginx: the set-up the client README
# recommends for checking client certificates, since pushprox-proxy itself does not.
#
# In a temporary directory it makes a CA, a server certificate for 127.0.0.1 and a v3 client
# certificate (extendedKeyUsage=clientAuth; a v1 certificate makes the client refuse to start),
# then starts, all on loopback:
#   - pushprox-proxy on 127.0.0.1:P (plain http; Prometheus and curl scrape it there),
#   - nginx on 127.0.0.1:Q, terminating TLS with ssl_verify_client on and passing /poll and
#     /push to the proxy (long polls and streamed pushes: no buffering, 300 s read time-out),
#   - a target on 127.0.0.2:T (python3 -m http.server serving a file),
#   - pushprox-client --fqdn 127.0.0.2 polling https://127.0.0.1:Q/ with its certificate,
#   - a second client, 127.0.0.3, without a certificate.
# It checks that a scrape through the proxy (curl -x) returns the file, that nginx answers the
# client without a certificate 400 "No required SSL certificate was sent" and that its poll
# error line says so, and that the proxy never lists that client.
#
# Run:    scripts/nginx-mtls.sh
#         PUSHPROX_BIN_DIR=target/debug scripts/nginx-mtls.sh   # use built binaries, no release build
# Needs:  nginx, openssl, curl, python3 (apt-get install nginx openssl curl python3). It
#         installs nothing. It runs nginx with master_process off, as any user, with every
#         file (pid, logs, temp files) in its temporary directory.
# Prints `nginx-mtls: PASS (Ns)` or `nginx-mtls: FAIL: reason` and exits 0 or 1. Everything it
# started is stopped on exit; once the binaries are there it takes a few seconds and at most
# 30 s.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_harness
e2e_failure_extra() {
    [ -f "$TMP/error.log" ] && { echo "----- nginx error.log (last 20) -----"; tail -n 20 "$TMP/error.log"; }
}

for tool in nginx openssl curl python3; do
    need "$tool" "apt-get install nginx openssl curl python3" || fail "$tool is not installed"
done
pushprox_bins || fail "the pushprox binaries are missing"
# Absolute, as the rest runs in the temporary directory.
PROXY_BIN=$(cd "$(dirname "$PROXY_BIN")" && pwd)/$(basename "$PROXY_BIN")
CLIENT_BIN=$(cd "$(dirname "$CLIENT_BIN")" && pwd)/$(basename "$CLIENT_BIN")

DEADLINE=$((SECONDS + 30))
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pushprox-nginx-mtls.XXXXXX") || fail "cannot make a temporary directory"

# wait_for WHAT SECONDS CMD...: runs CMD (a function, so that it is evaluated each time) until it
# succeeds, within SECONDS and the overall 30 s.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local until=$((SECONDS + secs))
    [ "$until" -gt "$DEADLINE" ] && until=$DEADLINE
    while [ "$SECONDS" -lt "$until" ]; do
        "$@" && return 0
        sleep 0.1
    done
    fail "$what within ${secs}s"
}

# ---- certificates -------------------------------------------------------------------------
cd "$TMP" || fail "cannot enter $TMP"
ssl_ca ca pushprox-nginx-mtls-ca
ssl_signed ca server 127.0.0.1 IP:127.0.0.1 serverAuth
ssl_signed ca client 127.0.0.2 IP:127.0.0.2 clientAuth

# ---- proxy, nginx, target ------------------------------------------------------------------
read -r P Q < <(free_ports 2 | paste -sd' ' -)
T=$(free_port 127.0.0.2) || fail "no free port on 127.0.0.2 (is 127.0.0.0/8 routed to lo?)"
BODY="nginx-mtls $$ $RANDOM"
mkdir -p www && printf '%s\n' "$BODY" >www/file

start_bg proxy "$TMP/proxy.log" "$PROXY_BIN" -l "127.0.0.1:$P" --log.level debug
PROXY_PID=$LAST_PID
proxy_up() {
    alive "$PROXY_PID" || fail "the proxy exited: $(tail -n 3 "$TMP/proxy.log")"
    [ "$(http_status "http://127.0.0.1:$P/-/healthy")" = 200 ]
}
wait_for "the proxy did not answer /-/healthy on 127.0.0.1:$P" 5 proxy_up

nginx_conf "$TMP" 128 >nginx.conf <<EOF
    server {
        listen 127.0.0.1:$Q ssl;
        ssl_certificate $TMP/server.crt;
        ssl_certificate_key $TMP/server.key;
        ssl_client_certificate $TMP/ca.crt;
        ssl_verify_client on;
        location ~ ^/(poll|push)\$ {
            proxy_pass http://127.0.0.1:$P;
            # A poll is held until a scrape comes; a push streams the target's body.
            proxy_read_timeout 300s;
            proxy_buffering off;
            proxy_request_buffering off;
            # Chunked pushes are only streamed, not buffered whole, over HTTP/1.1.
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            client_max_body_size 256m;
        }
        location / { return 404; }
    }
EOF
start_bg nginx "$TMP/nginx.out" nginx -c "$TMP/nginx.conf" -p "$TMP" -e "$TMP/error.log"
NGINX_PID=$LAST_PID
nginx_up() {
    alive "$NGINX_PID" || fail "nginx exited: $(tail -n 3 "$TMP/error.log" "$TMP/nginx.out" 2>/dev/null)"
    # Without a client certificate nginx answers 400; any answer means it is up.
    [ "$(http_status "https://127.0.0.1:$Q/poll" --cacert ca.crt)" != 000 ]
}
wait_for "nginx did not answer on 127.0.0.1:$Q" 5 nginx_up

start_bg target "$TMP/target.log" python3 -m http.server --bind 127.0.0.2 --directory "$TMP/www" "$T"
TARGET_PID=$LAST_PID
target_up() {
    alive "$TARGET_PID" || fail "the target exited: $(tail -n 3 "$TMP/target.log")"
    [ "$(http_status "http://127.0.0.2:$T/file")" = 200 ]
}
wait_for "the target did not serve http://127.0.0.2:$T/file" 5 target_up

# ---- clients -------------------------------------------------------------------------------
start_bg client "$TMP/client.log" "$CLIENT_BIN" --proxy-url "https://127.0.0.1:$Q/" \
    --tls.cacert ca.crt --tls.cert client.crt --tls.key client.key \
    --fqdn 127.0.0.2 --metrics-addr 127.0.0.1:0 --log.level debug
CLIENT_PID=$LAST_PID
start_bg client-without-cert "$TMP/client-nocert.log" "$CLIENT_BIN" --proxy-url "https://127.0.0.1:$Q/" \
    --tls.cacert ca.crt --fqdn 127.0.0.3 --metrics-addr 127.0.0.1:0 --log.level debug \
    --proxy.retry.initial-wait 200ms --proxy.retry.max-wait 1s

listed() { curl -sS --max-time 2 "http://127.0.0.1:$P/clients" 2>/dev/null | grep -q "\"$1\""; }
registered() {
    alive "$CLIENT_PID" || fail "the client with a certificate exited: $(tail -n 3 "$TMP/client.log")"
    listed 127.0.0.2
}
wait_for "the client with a certificate was not listed in the proxy's /clients" 10 registered

left=$((DEADLINE - SECONDS))
[ "$left" -lt 1 ] && fail "out of time before the scrape"
got=$(curl -sS --max-time "$left" -x "http://127.0.0.1:$P" "http://127.0.0.2:$T/file" 2>&1)
[ "$got" = "$BODY" ] || fail "the scrape through the proxy returned \"$got\", expected \"$BODY\""
pushed() { grep -q '"POST /push HTTP/1.1" 200 ' "$TMP/access.log"; }
wait_for "nginx's access log shows no push answered 200: the scrape did not go through nginx" 5 pushed
say "scrape through the proxy, pushed through nginx with mTLS: ok (\"$got\")"

refused() { grep -q 'poll of https://127.0.0.1:[0-9]*/poll failed: answered status 400 .*No required SSL certificate' "$TMP/client-nocert.log"; }
wait_for "the client without a certificate did not log nginx's 400 'No required SSL certificate'" 10 refused
say "client without a certificate, its log: $(grep -m1 -o 'poll of .*' "$TMP/client-nocert.log")"
if listed 127.0.0.3 || grep -q 'fqdn=127.0.0.3' "$TMP/proxy.log"; then
    fail "the proxy saw the client without a certificate (127.0.0.3)"
fi
alive "$PROXY_PID" || fail "the proxy exited"

PASSED=1
