#!/usr/bin/env bash
# Checks the systemd units scripts/pushprox-proxy.service and scripts/pushprox-client.service
# with their /etc/default files (scripts/pushprox-*.default):
#   1. `systemd-analyze verify` of each unit (its ExecStart pointed at the binaries under test,
#      as verify wants an executable there) finds nothing to say;
#   2. the commands the units run, expanded from the units' Environment= and the shipped
#      default files, are exactly `pushprox-proxy --web.listen-address :8080` and
#      `pushprox-client --proxy-url http://proxy.example:8080/`;
#   3. README's TLS set-up through the default files alone (PUSHPROX_PROXY_LISTEN and
#      --web.config.file with TLS and a bcrypt user, on a free loopback port instead of 8443):
#      the proxy started with the unit's command, as an unprivileged user as the unit's
#      DynamicUser, answers /-/healthy over https, the client started with its unit's command
#      registers, /clients lists it with the password and answers 401 without.
#
#   scripts/systemd-units.sh                                 builds the release binaries
#   PUSHPROX_BIN_DIR=target/debug scripts/systemd-units.sh   binaries already built there
#
# Needs systemd-analyze (Debian: systemd), openssl, curl, python3. Works without systemd running
# (no unit is installed or started: the commands are run as the units would run them).
# Ends with "systemd-units: PASS" or "systemd-units: FAIL: reason", exit 0 or 1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

TMP=$(mktemp -d) || exit 1
trap 'stop_all; rm -rf "$TMP"' EXIT
fail() {
    echo "systemd-units: FAIL: $*"
    dump_logs
    exit 1
}
ok() { echo "systemd-units: ok: $*"; }

for c in systemd-analyze openssl curl python3; do need "$c" || fail "missing $c"; done
pushprox_bins || fail "no binaries"

# --- 1. systemd-analyze verify -----------------------------------------------------------------

for b in pushprox-proxy pushprox-client; do
    unit=$ROOT/scripts/$b.service
    grep -qx "ExecStart=/usr/local/bin/$b .*" "$unit" || fail "$unit: ExecStart does not start /usr/local/bin/$b"
    bin=$PROXY_BIN
    [ "$b" = pushprox-client ] && bin=$CLIENT_BIN
    sed "s#/usr/local/bin/$b#$bin#g" "$unit" >"$TMP/$b.service"
    # verify exits 0 on unknown keys and bad values too, which it only prints: both count.
    out=$(systemd-analyze verify "$TMP/$b.service" 2>&1)
    rc=$?
    if [ "$rc" != 0 ] || [ -n "$out" ]; then fail "systemd-analyze verify $b.service (exit $rc): $out"; fi
    ok "systemd-analyze verify $b.service: nothing to say"
done

# --- 2. the commands with the shipped defaults -------------------------------------------------

# expect UNIT ENVFILE WORD...: the unit's command, one word a line, must be exactly WORDs.
expect() {
    local unit=$1 envfile=$2 got want what
    shift 2
    what="${unit##*/} with ${envfile##*/}"
    got=$(unit_command "$unit" "$envfile" 2>&1) || fail "expanding $unit: $got"
    want=$(printf '%s\n' "$@")
    [ "$got" = "$want" ] || fail "$what runs [$(one_line <<<"$got")], want [$(one_line <<<"$want")]"
    ok "$what runs: $(paste -sd' ' <<<"$got")"
}
expect "$ROOT/scripts/pushprox-proxy.service" "$ROOT/scripts/pushprox-proxy.default" \
    /usr/local/bin/pushprox-proxy --web.listen-address :8080
expect "$ROOT/scripts/pushprox-client.service" "$ROOT/scripts/pushprox-client.default" \
    /usr/local/bin/pushprox-client --proxy-url http://proxy.example:8080/
# Without the file (EnvironmentFile=- makes it optional) the unit's own defaults apply.
expect "$ROOT/scripts/pushprox-proxy.service" "-$TMP/no-default-file" \
    /usr/local/bin/pushprox-proxy --web.listen-address :8080

# --- 3. README's TLS set-up through the default files -------------------------------------------

ssl_ca ca "pushprox unit check CA"
ssl_signed ca proxy 127.0.0.1 IP:127.0.0.1 serverAuth
PW=unit-check-$RANDOM$RANDOM
SECRETS+=("$PW")
hash=$(printf %s "$PW" | "$PROXY_BIN" --hash-password prometheus) || fail "--hash-password failed"
cat >"$TMP/web.yml" <<EOF
tls_server_config:
  cert_file: $TMP/proxy.crt
  key_file: $TMP/proxy.key
  min_version: TLS12
basic_auth_users:
  prometheus: ${hash#prometheus:}
EOF
mapfile -t ports < <(free_ports 2) || fail "no free ports"
# The default files as shipped, with the lines an operator changes for README's set-up.
sed -e "s#^PUSHPROX_PROXY_LISTEN=.*#PUSHPROX_PROXY_LISTEN=127.0.0.1:${ports[0]}#" \
    -e "s#^PUSHPROX_PROXY_ARGS=.*#PUSHPROX_PROXY_ARGS=--web.config.file $TMP/web.yml --poll.max-hold 50s#" \
    "$ROOT/scripts/pushprox-proxy.default" >"$TMP/proxy.env"
sed -e "s#^PROXY_URL=.*#PROXY_URL=https://127.0.0.1:${ports[0]}/#" \
    -e "s#^PUSHPROX_CLIENT_ARGS=.*#PUSHPROX_CLIENT_ARGS=--fqdn unit-check.invalid --tls.cacert $TMP/ca.crt --metrics-addr 127.0.0.1:${ports[1]}#" \
    "$ROOT/scripts/pushprox-client.default" >"$TMP/client.env"
# The unit's user is not root (DynamicUser): run as nobody, who must read what the flags name.
chmod 0755 "$TMP" && chmod 0644 "$TMP"/*
as_user=()
[ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)

mapfile -t cmd < <(unit_command "$TMP/pushprox-proxy.service" "$TMP/proxy.env") || fail "expanding the proxy's unit"
ok "proxy's unit with the TLS set-up runs: ${cmd[*]}"
start_bg "pushprox-proxy (unit command)" "$TMP/proxy.log" "${as_user[@]}" "${cmd[@]}"
proxy_pid=$LAST_PID
url=https://127.0.0.1:${ports[0]}
wait_http "the proxy started with its unit's command" "$proxy_pid" "$url/-/healthy" 20 \
    --cacert "$TMP/ca.crt" || fail "$FAIL_REASON"
ok "the proxy listens where PUSHPROX_PROXY_LISTEN says, over https: /-/healthy 200"

mapfile -t cmd < <(unit_command "$TMP/pushprox-client.service" "$TMP/client.env") || fail "expanding the client's unit"
ok "client's unit runs: ${cmd[*]}"
start_bg "pushprox-client (unit command)" "$TMP/client.log" "${as_user[@]}" "${cmd[@]}"
client_pid=$LAST_PID
listed=0
for _ in $(seq 100); do
    alive "$client_pid" || fail "the client started with its unit's command exited"
    curl -sS --max-time 2 --cacert "$TMP/ca.crt" -u "prometheus:$PW" "$url/clients" 2>/dev/null |
        grep -q '"unit-check.invalid"' && { listed=1; break; }
    sleep 0.2
done
[ "$listed" = 1 ] || fail "the proxy's /clients did not list the client within 20 s"
code=$(http_status "$url/clients" --cacert "$TMP/ca.crt")
[ "$code" = 401 ] || fail "/clients without the password answered $code, want 401"
ok "the client registered over https; /clients lists it with the password, 401 without"
stop_all
echo "systemd-units: PASS"
