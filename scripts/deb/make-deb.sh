#!/usr/bin/env bash
# Makes one .deb from a static binary of target/static/TRIPLE/ (scripts/build-static.sh):
#   PACKAGE_DEBVERSION_DEBARCH.deb in OUTDIR, PACKAGE being pushprox-proxy or pushprox-client:
#   /usr/bin/PACKAGE; /lib/systemd/system/PACKAGE.service (scripts/PACKAGE.service for
#   /usr/bin); /etc/default/PACKAGE (scripts/PACKAGE.default), a conffile; the licence and
#   README in /usr/share/doc/PACKAGE; postinst, prerm, postrm from this directory (the system
#   user `pushprox`, the unit enabled and started as dh_installsystemd does).
# scripts/release.sh runs it for every target with a Debian architecture; scripts/deb-test.sh
# for a second version to upgrade to.
#
#   scripts/deb/make-deb.sh pushprox-proxy x86_64-unknown-linux-musl 0.1.0-1 target/dist/0.1.0
#
# dpkg-deb with a control file written here (why not cargo-deb: see scripts/release.sh). The
# files' dates are SOURCE_DATE_EPOCH's when set. Exits 0 without a package, and says so, for a
# target that has no Debian architecture (armv6, mips, riscv64).
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../lib.sh"

[ "$#" = 4 ] || { echo "usage: $0 PACKAGE TRIPLE DEBVERSION OUTDIR" >&2; exit 2; }
package=$1 triple=$2 debversion=$3 outdir=$4
static_target "$triple" || exit 2
case "$package" in
    pushprox-proxy) what="proxy: lets Prometheus scrape targets behind NAT or firewalls" ;;
    pushprox-client) what="client: polls a PushProx proxy, scrapes this host's targets" ;;
    *) echo "$0: PACKAGE is pushprox-proxy or pushprox-client, not $package" >&2; exit 2 ;;
esac
[ -n "$DEB_ARCH" ] || { say "$triple has no Debian architecture: no .deb"; exit 0; }
bin=${CARGO_TARGET_DIR:-$ROOT/target}/static/$triple/$package
[ -f "$bin" ] || { echo "$0: $bin is missing (scripts/build-static.sh --target $triple)" >&2; exit 1; }

root=$(mktemp -d) || exit 1
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$bin" "$root/usr/bin/$package" &&
    install -D -m 0644 "$ROOT/scripts/$package.default" "$root/etc/default/$package" &&
    install -D -m 0644 "$ROOT/LICENSE" "$root/usr/share/doc/$package/copyright" &&
    install -D -m 0644 "$ROOT/README.md" "$root/usr/share/doc/$package/README.md" &&
    mkdir -p "$root/lib/systemd/system" "$root/DEBIAN" || exit 1
# The unit as in scripts/, for /usr/bin; its header (how to install it by hand) gives way to
# where the package put things.
{
    printf '# %s.service, from the %s package. Settings: /etc/default/%s;\n' "$package" "$package" "$package"
    printf '# changes to the unit: a drop-in (systemctl edit %s). Runs as the system user pushprox.\n\n' "$package"
    sed -n '/^\[Unit\]/,$p' "$ROOT/scripts/$package.service" | sed "s#/usr/local/bin/$package#/usr/bin/$package#g"
} >"$root/lib/systemd/system/$package.service" || exit 1
echo "/etc/default/$package" >"$root/DEBIAN/conffiles"
for f in postinst prerm postrm; do
    sed "s/#PACKAGE#/$package/g" "$ROOT/scripts/deb/$f" >"$root/DEBIAN/$f" && chmod 0755 "$root/DEBIAN/$f" || exit 1
done
cat >"$root/DEBIAN/control" <<EOF
Package: $package
Version: $debversion
Architecture: $DEB_ARCH
Maintainer: ${RELEASE_MAINTAINER:-pushprox-rs developers <pushprox-rs@users.noreply.github.com>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: adduser
Section: net
Priority: optional
Homepage: https://github.com/pushprox-rs/pushprox-rs
Description: PushProx $what
 pushprox-rs is Prometheus' PushProx rebuilt in Rust, wire-compatible with the
 Go PushProx: clients behind NAT long-poll the proxy, and Prometheus scrapes
 their targets through it. One static binary (musl), a systemd unit, and its
 settings in /etc/default/$package.
EOF
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + || exit 1
fi
deb=$outdir/${package}_${debversion}_$DEB_ARCH.deb
mkdir -p "$outdir" && dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null || exit 1
say "$(basename "$deb"): $(stat -c %s "$deb") bytes"
