#!/usr/bin/env bash
# Installs what building and checking the static binaries of one target takes (the targets of
# scripts/lib.sh's static_target; scripts/build-static.sh runs this first). Installs only what
# is missing (apt-get, as root), so a second run does nothing:
#
#   scripts/static-toolchain.sh x86_64-unknown-linux-musl
#   scripts/static-toolchain.sh s390x-unknown-linux-musl
#
# Why each piece is there:
# - x86-64: the Rust target x86_64-unknown-linux-musl (rustup; its std is prebuilt), musl-gcc
#   for ring's C code (Debian's musl-tools).
# - every other target: rustup cannot download other targets' std here, so std is built from
#   source: Debian's rustc-web and cargo-web (1.96) with rust-web-src (std's source; their
#   sysroot is /usr, where -Zbuild-std finds it; the first build fetches std's own dependencies
#   from crates.io). gcc-GNU: the cross compiler, linker and `ar`; gcc's libgcc_eh.a stands in
#   for libunwind.a (gcc 11's, libgcc-11-dev-ARCH-cross, where Debian has it: gcc 12's calls
#   glibc's _dl_find_object, which musl lacks). musl's crt objects, libc.a and gcc wrapper: Debian's musl-dev:ARCH (after `dpkg
#   --add-architecture`) where it fits the Rust target; else musl 1.2.3 (Debian's version) built
#   from Debian's source package into /usr/local/lib/pushprox-musl/TRIPLE: big-endian mips and
#   riscv64 (Debian 12 has no such architecture), 32-bit MIPS (Rust's mips/mipsel musl targets
#   are soft-float, Debian's musl is hard-float), ARMv6 (Debian's armhf musl is ARMv7 code).
#   qemu-user-static runs the binaries for the checks (qemu-ARCH-static ./bin: no binfmt_misc
#   registration is assumed); ca-certificates: Debian's cargo reaches crates.io with them.
# - all: file, binutils (readelf), openssl, python3, curl for the checks.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$#" = 1 ] || { echo "usage: $0 TRIPLE (one of: ${STATIC_TARGETS[*]})" >&2; exit 2; }
TARGET=$1
static_target "$TARGET" || exit 2
die() {
    printf '%s: %s\n' "$SCRIPT" "$*" >&2
    exit 1
}

# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# command or file -> the Debian package that brings it
declare -A package_of=([file]=file [openssl]=openssl [python3]=python3 [readelf]=binutils [curl]=curl)
if [ "$TARGET" = x86_64-unknown-linux-musl ]; then
    need cargo "install Rust with rustup" || exit 1
    if command -v rustup >/dev/null; then
        if ! rustup target list --installed | grep -qx "$TARGET"; then
            say "adding the Rust target $TARGET"
            rustup target add "$TARGET" || die "rustup target add $TARGET failed"
        fi
    elif [ ! -d "$(rustc --print sysroot)/lib/rustlib/$TARGET" ]; then
        die "the Rust standard library for $TARGET is missing and rustup is not there to add it"
    fi
    package_of[musl-gcc]=musl-tools
else
    package_of+=([/usr/bin/cargo]=cargo-web [/usr/bin/rustc]=rustc-web
        [/usr/lib/rustlib/src/rust/library/Cargo.lock]=rust-web-src
        [$GNU-gcc]=gcc-$GNU [$QEMU]=qemu-user-static
        [/etc/ssl/certs/ca-certificates.crt]=ca-certificates)
    [ "$UNWIND_GCC" = 12 ] || package_of[/usr/lib/gcc-cross/$GNU/$UNWIND_GCC/libgcc_eh.a]=libgcc-$UNWIND_GCC-dev-$DEB_ARCH-cross
    [ -z "$MUSL_SRC" ] || package_of[make]="make"
fi
missing=()
for want in "${!package_of[@]}"; do
    case "$want" in
        /*) [ -e "$want" ] ;;
        *) command -v "$want" >/dev/null ;;
    esac || missing+=("${package_of[$want]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    apt_install "${missing[@]}" || exit 1
fi
[ "$TARGET" = x86_64-unknown-linux-musl ] && exit 0

# --- musl: Debian's package -----------------------------------------------------------------------

if [ -z "$MUSL_SRC" ]; then
    [ -x "/usr/bin/$MUSL-gcc" ] && [ -f "/usr/lib/$MUSL/libc.a" ] && exit 0
    # The package of another architecture: dpkg must know that architecture first.
    if ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
        [ "$(id -u)" = 0 ] || die "musl-dev:$DEB_ARCH is missing: as root, dpkg --add-architecture $DEB_ARCH && apt-get update && apt-get install musl-dev:$DEB_ARCH"
        say "adding the architecture $DEB_ARCH to dpkg"
        dpkg --add-architecture "$DEB_ARCH" || die "dpkg --add-architecture $DEB_ARCH failed"
    fi
    apt_install "musl-dev:$DEB_ARCH" || exit 1
    [ -f "/usr/lib/$MUSL/libc.a" ] || die "musl-dev:$DEB_ARCH installed, but /usr/lib/$MUSL/libc.a is not there"
    exit 0
fi

# --- musl: built from Debian's source package ---------------------------------------------------

prefix=$(musl_prefix "$TARGET")
# without_gcc_crt: musl's gcc wrapper links gcc's crtbeginS.o and crtendS.o; on ARMv6 leave them
# out. Debian's armhf gcc made them of ARMv7 Thumb-2 code (movw, movt), which an ARMv6 decodes
# as other instructions: its constructor jumped into musl's setgroups, and musl killed the
# process. musl's own crt1.o, crti.o and crtn.o are all a static binary needs (musl runs the
# init_array; EH frames are ARM's .ARM.exidx, found without registration).
without_gcc_crt() {
    case "$MUSL_SRC" in
        *-march=armv6*) sed -i -e 's# crtbeginS\.o%s##' -e 's#crtendS\.o%s ##' "$prefix/lib/musl-gcc.specs" ;;
    esac
}
if [ -x "$prefix/bin/musl-gcc" ] && [ -f "$prefix/lib/libc.a" ]; then
    without_gcc_crt
    exit 0
fi
[ "$(id -u)" = 0 ] || die "musl for $TARGET is missing: run this script as root to build it into $prefix"
MUSL_VERSION=1.2.3
read -r musl_target cflags <<<"$MUSL_SRC"
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
# Debian's source package through apt, with a sources list of our own (deb-src of the mirror
# the system uses), so that the system's apt configuration stays as it is.
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" || exit 1
printf 'deb-src %s bookworm main\n' "$mirror" >"$work/apt/sources.list"
apt_src=(apt-get -o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache")
say "fetching musl $MUSL_VERSION's source (Debian's source package) from $mirror"
(cd "$work" && "${apt_src[@]}" update -qq && "${apt_src[@]}" source --download-only -qq "musl=$MUSL_VERSION-1") \
    >"$work/apt.log" 2>&1 || die "could not fetch musl's source: $(tail -n 3 "$work/apt.log" | one_line)"
tar -xzf "$work/musl_$MUSL_VERSION.orig.tar.gz" -C "$work" || die "cannot unpack musl_$MUSL_VERSION.orig.tar.gz"
say "building musl $MUSL_VERSION for $musl_target (CFLAGS $cflags) into $prefix"
(
    cd "$work/musl-$MUSL_VERSION" &&
        ./configure --target="$musl_target" CROSS_COMPILE="$GNU-" CC="$GNU-gcc" \
            CFLAGS="-Os $cflags" --prefix="$prefix" --disable-shared --enable-wrapper=gcc &&
        nice -n 15 make -j"$(nproc)" && make install
) >"$work/build.log" 2>&1 || die "building musl failed: $(tail -n 5 "$work/build.log" | one_line)"
{ [ -x "$prefix/bin/musl-gcc" ] && [ -f "$prefix/lib/libc.a" ]; } || die "musl built, but $prefix/bin/musl-gcc or lib/libc.a is missing"
without_gcc_crt || die "cannot edit $prefix/lib/musl-gcc.specs"
say "musl for $TARGET in $prefix"
