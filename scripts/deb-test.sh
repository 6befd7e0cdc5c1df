#!/usr/bin/env bash
# The package test: installs this host's pushprox-proxy and pushprox-client .debs (made by
# scripts/release.sh in DIST), checks them, upgrades them to a second version and purges them:
#   1. install (dpkg -i): both packages "install ok installed", the
#      binaries in /usr/bin print VERSION, the system user pushprox (no login shell), the
#      units in /lib/systemd/system pass `systemd-analyze verify` silently and are enabled,
#      /etc/default/* are conffiles;
#   2. started as their units start them (systemctl when systemd runs here; else the units'
#      ExecStart expanded from their Environment= and /etc/default file, as the user pushprox):
#      after an operator's edit of /etc/default/pushprox-proxy (a free loopback port) the proxy
#      answers /-/healthy there, and the client, pointed at it by /etc/default/pushprox-client,
#      is listed in /clients;
#   3. upgrade to VERSION-2 (made here by scripts/deb/make-deb.sh): the new version installed
#      without a question, the operator's /etc/default files kept, still enabled, and the proxy
#      started again answers;
#   4. purge: binaries, units, /etc/default files and the units' enablement gone.
#
#   scripts/deb-test.sh target/dist/0.1.0 0.1.0      as root; scripts/release.sh --ci runs it
#
# Leaves the host as it found it: the packages are purged on exit, whatever happened, and the
# user pushprox is deleted when this test made it. Ends with "deb-test: PASS" or
# "deb-test: FAIL: reason", exit 0 or 1.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$#" = 2 ] || { echo "usage: $0 DIST VERSION" >&2; exit 2; }
DIST=$1 VERSION=$2
PACKAGES=(pushprox-proxy pushprox-client)
TMP=$(mktemp -d) || exit 1
chmod 0755 "$TMP"
made_user=0
# dpkg itself, not apt-get: what is tested is the packages' own scripts and files, and apt
# reading the indexes of every architecture added for the cross builds costs seconds a call.
DPKG=(dpkg)
purge() {
    "${DPKG[@]}" --purge "${PACKAGES[@]}" >"$TMP/purge.log" 2>&1
}
cleanup() {
    stop_all
    if dpkg-query -W -f='${Status}\n' "${PACKAGES[@]}" 2>/dev/null | grep -q installed; then
        purge || warn "could not purge ${PACKAGES[*]}: $(tail -n 3 "$TMP/purge.log" | one_line)"
    fi
    [ "$made_user" = 1 ] && getent passwd pushprox >/dev/null && deluser --system --quiet pushprox >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
    echo "deb-test: FAIL: $*"
    dump_logs
    exit 1
}
ok() { echo "deb-test: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "installing packages needs root"
for c in dpkg apt-get systemd-analyze curl python3 setpriv; do need "$c" || fail "missing $c"; done
arch=$(dpkg --print-architecture)
triple=""
for t in "${STATIC_TARGETS[@]}"; do
    static_target "$t" && [ "$DEB_ARCH" = "$arch" ] && triple=$t
done
[ -n "$triple" ] || fail "no static target for this host's architecture $arch"
for p in "${PACKAGES[@]}"; do
    [ -f "$DIST/${p}_$VERSION-1_$arch.deb" ] || fail "$DIST/${p}_$VERSION-1_$arch.deb is missing (scripts/release.sh makes it)"
done
if dpkg-query -W -f='${Status}\n' "${PACKAGES[@]}" 2>/dev/null | grep -q installed; then
    fail "${PACKAGES[*]} already installed here: this test would replace them (apt-get purge ${PACKAGES[*]} first)"
fi
getent passwd pushprox >/dev/null || made_user=1
# The packages' one dependency (Debian installs it everywhere but in the slimmest images).
command -v adduser >/dev/null || apt_install adduser || fail "cannot install adduser"
systemd_runs=0
[ -d /run/systemd/system ] && systemd_runs=1

# install DEB...: dpkg -i, with no terminal to ask a question on (a conffile question fails).
install_debs() {
    "${DPKG[@]}" -i "$@" </dev/null >"$TMP/install.log" 2>&1 ||
        fail "dpkg -i $*: $(tail -n 5 "$TMP/install.log" | one_line)"
}

# check_installed DEBVERSION: the packages' state, files, user and units.
check_installed() {
    local want=$1 p status v unit out
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>&1)
        [ "$status" = "install ok installed $want" ] || fail "$p: dpkg says \"$status\", want \"install ok installed $want\""
        v=$("/usr/bin/$p" --version 2>&1 | head -n 1)
        [ "$v" = "$p $VERSION" ] || fail "/usr/bin/$p --version printed \"$v\", want \"$p $VERSION\""
        dpkg-query -W -f='${Conffiles}\n' "$p" | grep -q "^ /etc/default/$p " || fail "/etc/default/$p is not a conffile of $p"
        unit=/lib/systemd/system/$p.service
        [ -f "$unit" ] || fail "$unit is missing"
        grep -qx "ExecStart=/usr/bin/$p .*" "$unit" || fail "$unit does not start /usr/bin/$p"
        if ! out=$(systemd-analyze verify "$unit" 2>&1) || [ -n "$out" ]; then fail "systemd-analyze verify $unit: $out"; fi
        [ -L "/etc/systemd/system/multi-user.target.wants/$p.service" ] || fail "$p.service is not enabled"
    done
    local entry
    entry=$(getent passwd pushprox) || fail "no user pushprox"
    IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
    if [ "$uid" -ge 1000 ] || [ "$shell" != /usr/sbin/nologin ] || [ "$home" != /nonexistent ]; then
        fail "the user pushprox is not a system user without login: $entry"
    fi
    ok "$want: both installed, /usr/bin binaries say $VERSION, user pushprox (uid $uid, $shell), units verified and enabled, /etc/default/* conffiles"
}

# run_units: starts the proxy and the client as their units would (systemctl when systemd runs
# here), and checks that the proxy answers where /etc/default/pushprox-proxy says and that it
# lists the client. Stops them after.
run_units() {
    local what=$1 cmd n
    if [ "$systemd_runs" = 1 ]; then
        systemctl restart pushprox-proxy pushprox-client || fail "systemctl restart failed"
    else
        for p in "${PACKAGES[@]}"; do
            mapfile -t cmd < <(unit_command "/lib/systemd/system/$p.service") || fail "expanding $p.service"
            [ "${#cmd[@]}" -gt 0 ] || fail "expanding $p.service gave no command"
            start_bg "$p (as its unit)" "$TMP/$p-$what.log" setpriv --reuid=pushprox --regid=pushprox --clear-groups "${cmd[@]}"
            [ "$p" = pushprox-proxy ] && ok "$what: the proxy's unit runs: ${cmd[*]}"
        done
    fi
    local code=000
    for ((n = 0; n < 100; n++)); do
        code=$(http_status "http://127.0.0.1:$PORT/-/healthy")
        [ "$code" = 200 ] && break
        sleep 0.2
    done
    [ "$code" = 200 ] || fail "$what: the proxy does not answer /-/healthy on 127.0.0.1:$PORT (last: $code)"
    for ((n = 0; n < 100; n++)); do
        curl -sS --max-time 2 "http://127.0.0.1:$PORT/clients" 2>/dev/null | grep -q '"deb-test.invalid"' && break
        sleep 0.2
    done
    [ "$n" -lt 100 ] || fail "$what: the client did not register with the proxy within 20 s"
    ok "$what: the proxy answers /-/healthy on 127.0.0.1:$PORT and lists the client"
    if [ "$systemd_runs" = 1 ]; then systemctl stop pushprox-proxy pushprox-client; else stop_all; fi
}

# --- 1. install ----------------------------------------------------------------------------------

install_debs "$DIST/pushprox-proxy_$VERSION-1_$arch.deb" "$DIST/pushprox-client_$VERSION-1_$arch.deb"
check_installed "$VERSION-1"

# --- 2. run as the units do ----------------------------------------------------------------------

mapfile -t ports < <(free_ports 2) || fail "no free ports"
PORT=${ports[0]}
# An operator's edits of the conffiles.
sed -i "s#^PUSHPROX_PROXY_LISTEN=.*#PUSHPROX_PROXY_LISTEN=127.0.0.1:$PORT#" /etc/default/pushprox-proxy
sed -i -e "s#^PROXY_URL=.*#PROXY_URL=http://127.0.0.1:$PORT/#" \
    -e "s#^PUSHPROX_CLIENT_ARGS=.*#PUSHPROX_CLIENT_ARGS=--fqdn deb-test.invalid --metrics-addr 127.0.0.1:${ports[1]}#" \
    /etc/default/pushprox-client
cp /etc/default/pushprox-proxy /etc/default/pushprox-client "$TMP/"
run_units "$VERSION-1"

# --- 3. upgrade ------------------------------------------------------------------------------------

for p in "${PACKAGES[@]}"; do
    bash "$ROOT/scripts/deb/make-deb.sh" "$p" "$triple" "$VERSION-2" "$TMP/v2" >/dev/null || fail "make-deb.sh $p $VERSION-2 failed"
done
install_debs "$TMP/v2/pushprox-proxy_$VERSION-2_$arch.deb" "$TMP/v2/pushprox-client_$VERSION-2_$arch.deb"
check_installed "$VERSION-2"
for p in "${PACKAGES[@]}"; do
    cmp -s "/etc/default/$p" "$TMP/$p" || fail "the upgrade did not keep the operator's /etc/default/$p"
done
ok "upgrade to $VERSION-2 kept the edited /etc/default files"
run_units "$VERSION-2"

# --- 4. purge --------------------------------------------------------------------------------------

purge || fail "dpkg --purge: $(tail -n 5 "$TMP/purge.log" | one_line)"
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
    case "$status" in "" | "unknown ok not-installed" | "purge ok not-installed") ;; *) fail "$p after purge: dpkg says \"$status\"" ;; esac
    for f in "/usr/bin/$p" "/lib/systemd/system/$p.service" "/etc/default/$p" \
        "/etc/systemd/system/multi-user.target.wants/$p.service"; do
        if [ -e "$f" ] || [ -L "$f" ]; then fail "$f is still there after the purge"; fi
    done
done
ok "purged: binaries, units, /etc/default files and enablement gone"
echo "deb-test: PASS"
