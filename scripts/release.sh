#!/usr/bin/env bash
# Makes a release: the static binaries of every target (scripts/build-static.sh --all, each one
# checked) packed as the Go PushProx release packs its own (promu's layout, so that download
# scripts and Ansible roles only need a new URL):
#   pushprox-VERSION.linux-ARCH.tar.gz   holding pushprox-VERSION.linux-ARCH/{pushprox-proxy,
#                                        pushprox-client,LICENSE}; ARCH is Go's name: amd64,
#                                        386, arm64, armv7, armv6, armv5, mips, mipsle,
#                                        mips64le, ppc64le, riscv64, s390x
#   pushprox-proxy_VERSION-1_DEBARCH.deb, pushprox-client_VERSION-1_DEBARCH.deb   for Debian's
#       architectures (amd64, i386, arm64, armhf, armel, mipsel, mips64el, ppc64el, s390x): the
#       binary in /usr/bin, the systemd unit (scripts/pushprox-*.service, run as the system user
#       `pushprox` the package makes), /etc/default/pushprox-* as a conffile
#   sha256sums.txt                       of all of them
# in target/dist/VERSION/.
#
#   scripts/release.sh 0.1.0          build, check and pack every target (VERSION must be the
#                                     binaries' own, from Cargo.toml)
#   scripts/release.sh --check        what a release runs: the above, plus every target's pair
#                                     under qemu (scripts/emulation.sh --all) and the package
#                                     test (scripts/deb-test.sh: the host's .debs installed,
#                                     started as their units do, upgraded, purged)
#   scripts/release.sh --ci           the same for one target of each family (x86-64, aarch64,
#                                     armv7, s390x): what CI runs
#   RELEASE_SKIP_BUILD=1 scripts/release.sh ...   pack target/static/ as it is
#
# From a fresh clone on two idle cores, toolchains installed: --check 19 min (about 90 s per
# target's build), --ci 5.5 min.
#
# The .debs are made with dpkg-deb from a control file written here, not with cargo-deb: the
# binaries are already built and checked by build-static.sh for each target (cargo-deb would
# build them again through its own cargo run, and is not packaged in Debian 12: installing it
# means compiling it), and what a package needs beyond dpkg-deb is a control file and three
# short maintainer scripts (scripts/deb/make-deb.sh and its postinst, prerm, postrm), which say
# plainly what they do. Needs dpkg-deb, tar, gzip, sha256sum (Debian: dpkg, tar, gzip,
# coreutils). Ends with a summary (per target: built and checked, qemu, sizes; seconds per
# step) and exits non-zero when any step failed.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

die() {
    printf '%s: %s\n' "$SCRIPT" "$*" >&2
    exit 1
}
mode=release
version=""
case "${1:-}" in
    --check) mode=check ;;
    --ci) mode=ci ;;
    -h | --help) script_help; exit 0 ;;
    "") die "usage: $0 VERSION | --check | --ci (try --help)" ;;
    -*) die "unknown argument $1 (try --help)" ;;
    *) version=$1 ;;
esac
cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ -n "$cargo_version" ] || die "no version in Cargo.toml's [workspace.package]"
version=${version:-$cargo_version}
[ "$version" = "$cargo_version" ] || die "VERSION $version is not the binaries' version $cargo_version (Cargo.toml)"
targets=("${STATIC_TARGETS[@]}")
[ "$mode" = ci ] && targets=("${STATIC_CI_TARGETS[@]}")
for c in dpkg-deb tar gzip sha256sum; do need "$c" || exit 1; done

target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
dist=$target_dir/dist/$version
START=$SECONDS
steps=()
failed=0
# step NAME CMD...: runs one step, times it, records how it went; goes on after a failure.
step() {
    local name=$1 start=$SECONDS
    shift
    printf '\n==> %s: %s\n' "$SCRIPT" "$name"
    if "$@"; then
        steps+=("ok    $name ($((SECONDS - start))s)")
    else
        steps+=("FAIL  $name ($((SECONDS - start))s)")
        failed=1
    fi
}

# --- build and check every target ---------------------------------------------------------------

declare -A built
if [ "${RELEASE_SKIP_BUILD:-0}" != 1 ]; then
    for t in "${targets[@]}"; do
        step "build and check $t" bash "$ROOT/scripts/build-static.sh" --target "$t" && built[$t]=1
        [ -n "${built[$t]:-}" ] || built[$t]=0
    done
else
    for t in "${targets[@]}"; do
        built[$t]=0
        [ -f "$target_dir/static/$t/pushprox-proxy" ] && [ -f "$target_dir/static/$t/pushprox-client" ] && built[$t]=1
    done
fi
if [ "$mode" != release ]; then
    emulated=()
    for t in "${targets[@]}"; do
        [ "$t" != x86_64-unknown-linux-musl ] && [ "${built[$t]}" = 1 ] && emulated+=(--target "$t")
    done
    [ "${#emulated[@]}" -gt 0 ] &&
        step "qemu: $((${#emulated[@]} / 2)) targets' binaries with x86-64 ones" \
            env EMULATION_SKIP_BUILD=1 PUSHPROX_BIN_DIR="$target_dir/static/x86_64-unknown-linux-musl" \
            bash "$ROOT/scripts/emulation.sh" "${emulated[@]}"
fi

# --- archives, packages, checksums ----------------------------------------------------------------

# The date in the archives and packages: the last commit's, so that a rebuild of the same
# commit makes the same bytes (tar and dpkg-deb honour SOURCE_DATE_EPOCH).
SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

# archive TRIPLE: pushprox-VERSION.linux-GO_ARCH.tar.gz in $dist.
# shellcheck disable=SC2317  # run through pack, which step runs
archive() {
    static_target "$1" || return 1
    local name=pushprox-$version.linux-$GO_ARCH work
    work=$(mktemp -d) || return 1
    mkdir "$work/$name" &&
        install -m 0755 "$target_dir/static/$1/pushprox-proxy" "$target_dir/static/$1/pushprox-client" "$work/$name/" &&
        install -m 0644 "$ROOT/LICENSE" "$work/$name/" &&
        tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
            -cf - "$name" | gzip -n -9 >"$dist/$name.tar.gz"
    local rc=$?
    rm -rf "$work"
    [ "$rc" = 0 ] && say "$name.tar.gz: $(stat -c %s "$dist/$name.tar.gz") bytes"
}

# shellcheck disable=SC2317  # run through step
pack() {
    local t ok=0
    rm -rf "$dist" && mkdir -p "$dist" || return 1
    for t in "${targets[@]}"; do
        [ "${built[$t]}" = 1 ] || { warn "$t did not build: not packed"; ok=1; continue; }
        archive "$t" || ok=1
        bash "$ROOT/scripts/deb/make-deb.sh" pushprox-proxy "$t" "$version-1" "$dist" || ok=1
        bash "$ROOT/scripts/deb/make-deb.sh" pushprox-client "$t" "$version-1" "$dist" || ok=1
    done
    (cd "$dist" && sha256sum -- *.tar.gz *.deb >sha256sums.txt) || ok=1
    # What was packed is what was checked: each archive's and package's binaries are the bytes
    # in target/static that build-static.sh checked (and emulation.sh ran).
    local unpacked b
    unpacked=$(mktemp -d) || return 1
    for t in "${targets[@]}"; do
        [ "${built[$t]}" = 1 ] || continue
        static_target "$t"
        tar -xzf "$dist/pushprox-$version.linux-$GO_ARCH.tar.gz" -C "$unpacked" || ok=1
        for b in pushprox-proxy pushprox-client; do
            cmp -s "$unpacked/pushprox-$version.linux-$GO_ARCH/$b" "$target_dir/static/$t/$b" ||
                { warn "pushprox-$version.linux-$GO_ARCH.tar.gz: $b differs from $target_dir/static/$t/$b"; ok=1; }
            [ -n "$DEB_ARCH" ] || continue
            if ! { dpkg-deb --fsys-tarfile "$dist/${b}_$version-1_$DEB_ARCH.deb" | tar -xf - -C "$unpacked" "./usr/bin/$b" &&
                cmp -s "$unpacked/usr/bin/$b" "$target_dir/static/$t/$b"; }; then
                warn "${b}_$version-1_$DEB_ARCH.deb: /usr/bin/$b differs from $target_dir/static/$t/$b"
                ok=1
            fi
        done
    done
    rm -rf "$unpacked"
    (cd "$dist" && sha256sum --quiet -c sha256sums.txt) || ok=1
    [ "$ok" = 0 ] && say "$(find "$dist" -name '*.tar.gz' | wc -l) archives and $(find "$dist" -name '*.deb' | wc -l) packages hold the checked binaries; sha256sums.txt verified"
    return "$ok"
}
step "archives, packages and sha256sums.txt in $dist" pack

if [ "$mode" != release ]; then
    step "package test: the host's .debs installed, run as their units, upgraded, purged" \
        bash "$ROOT/scripts/deb-test.sh" "$dist" "$version"
fi

# --- summary ----------------------------------------------------------------------------------------

printf '\n==> %s: summary (%s, %s targets)\n' "$SCRIPT" "$mode" "${#targets[@]}"
for t in "${targets[@]}"; do
    static_target "$t"
    sizes=""
    for b in pushprox-proxy pushprox-client; do
        f=$target_dir/static/$t/$b
        [ -f "$f" ] && sizes+=" $b $(stat -c %s "$f")"
    done
    printf '%-34s linux-%-9s %s%s\n' "$t" "$GO_ARCH" "$([ "${built[$t]}" = 1 ] && echo built || echo NOT-BUILT)" "$sizes"
done
printf '%s\n' "${steps[@]}"
echo "release $version: $([ "$failed" = 0 ] && echo PASS || echo FAIL) ($((SECONDS - START))s); $dist"
exit "$failed"
