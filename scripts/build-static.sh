#!/usr/bin/env bash
# Builds fully static pushprox-proxy and pushprox-client (musl libc, Cargo profile `static`) for
# one or more Linux targets, copies them to target/static/TRIPLE/, and checks them with
# scripts/static-checks.sh (size budget, static linking, an empty environment, TLS; other
# architectures under qemu-user). The toolchain comes first, from scripts/static-toolchain.sh
# (which installs what is missing, as root).
#
#   scripts/build-static.sh                                      x86_64-unknown-linux-musl
#   scripts/build-static.sh --target s390x-unknown-linux-musl    one target (repeatable)
#   scripts/build-static.sh --ci     one of each family: x86-64, aarch64, armv7, s390x
#   scripts/build-static.sh --all    every target (scripts/lib.sh's STATIC_TARGETS):
#     x86_64, i686, aarch64, armv7 and arm (ARMv6, hard float) -musleabihf, armv5te-musleabi,
#     mips, mipsel, mips64el(-muslabi64), powerpc64le, riscv64gc, s390x
#   STATIC_MAX_BYTES=2500000 scripts/build-static.sh    one size budget for both binaries
#   STATIC_SKIP_CHECKS=1 scripts/build-static.sh ...     build only
#
# Every target but x86-64 is built with Debian's rustc-web and -Zbuild-std (std compiled for the
# target: RUSTC_BOOTSTRAP=1 allows -Z on a stable compiler; /usr/bin/cargo is run by path, as
# the cargo first on PATH is rustup's), linked -static -no-pie (relocation-model=static) by
# musl's gcc wrapper against musl's libc.a (Debian's musl 1.2.3 lacks the packed relocations
# that keep the x86-64 build a small static PIE). Several targets: one after the other, each one
# even when an earlier one failed, and a summary line per target (seconds, sizes). Exits
# non-zero when a build or a check fails. Builds run under `nice`.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

PROFILE=static
BINS=(pushprox-proxy pushprox-client)
die() {
    printf '%s: %s\n' "$SCRIPT" "$*" >&2
    exit 1
}

targets=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --target) [ "$#" -ge 2 ] || die "--target needs a triple"; targets+=("$2"); shift 2 ;;
        --target=*) targets+=("${1#--target=}"); shift ;;
        --all) targets+=("${STATIC_TARGETS[@]}"); shift ;;
        --ci) targets+=("${STATIC_CI_TARGETS[@]}"); shift ;;
        -h | --help) script_help; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(x86_64-unknown-linux-musl)
for t in "${targets[@]}"; do static_target "$t" >/dev/null || exit 2; done

# Several targets: one run of this script each, every one even when an earlier one failed.
if [ "${#targets[@]}" -gt 1 ]; then
    results=()
    rc=0
    for t in "${targets[@]}"; do
        start=$SECONDS
        printf '\n==> %s --target %s\n' "$SCRIPT" "$t"
        if bash "$0" --target "$t"; then
            results+=("ok    $t ($((SECONDS - start))s)")
        else
            results+=("FAIL  $t ($((SECONDS - start))s)")
            rc=1
        fi
    done
    printf '\n'
    printf '%s\n' "${results[@]}"
    exit "$rc"
fi

TARGET=${targets[0]}
static_target "$TARGET" || exit 2
bash "$ROOT/scripts/static-toolchain.sh" "$TARGET" || die "the toolchain for $TARGET is not there"

# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cd "$ROOT" || exit 1
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
out=$target_dir/static/$TARGET
mkdir -p "$out" || exit 1
if [ "$TARGET" = x86_64-unknown-linux-musl ]; then
    cargo=(cargo build)
    # Relative relocations packed as DT_RELR (GNU ld 2.38+ or lld; musl 1.2.4+ applies them at
    # start, Rust's own musl does): a static PIE keeps its ASLR, and its table of relocations
    # shrinks from 86 KB to 1 KB. A linker without it makes a larger binary, which the size
    # check reports.
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS:-} -C link-arg=-Wl,-z,pack-relative-relocs"
    # ring compiles C: musl-gcc builds it against musl, not glibc.
    export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
else
    if [ -n "$MUSL_SRC" ]; then
        musl_gcc=$(musl_prefix "$TARGET")/bin/musl-gcc musl_lib=$(musl_prefix "$TARGET")/lib
    else
        musl_gcc=$MUSL-gcc musl_lib=/usr/lib/$MUSL
    fi
    cargo=(/usr/bin/cargo build "-Zbuild-std=std,panic_abort")
    export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
    # std wants libunwind.a: gcc's libgcc_eh.a under that name, in a directory of its own.
    unwind_dir=$target_dir/static/unwind/$TARGET
    eh=/usr/lib/gcc-cross/$GNU/$UNWIND_GCC/libgcc_eh.a
    mkdir -p "$unwind_dir" && rm -f "$unwind_dir/libunwind.a" || exit 1
    # (grep without -q: nm must not die of SIGPIPE, which pipefail would count as no match.)
    if "$GNU-nm" "$eh" 2>/dev/null | grep ' U _dl_find_object$' >/dev/null; then
        # gcc 12's unwinder asks glibc's _dl_find_object for the unwind tables of an address
        # (where Debian has no gcc 11 for the target: mips, riscv64). Given one that finds
        # nothing, it finds no tables: a panic's backtrace is empty (panic=abort needs no
        # unwinding), the rest is as elsewhere.
        printf '%s\n' '/* No dynamic objects in a static binary: nothing to find. */' \
            'int _dl_find_object(void *pc, void *result) { (void)pc; (void)result; return -1; }' \
            >"$unwind_dir/dl_find_object.c" &&
            "$GNU-gcc" -O2 -c -o "$unwind_dir/dl_find_object.o" "$unwind_dir/dl_find_object.c" &&
            cp "$eh" "$unwind_dir/libunwind.a" &&
            "$GNU-ar" rs "$unwind_dir/libunwind.a" "$unwind_dir/dl_find_object.o" || exit 1
    else
        ln -s "$eh" "$unwind_dir/libunwind.a" || exit 1
    fi
    upper=${TARGET^^}
    upper=${upper//-/_}
    lower=${TARGET//-/_}
    # Linked by musl's gcc wrapper (its crt objects, not rustc's self-contained ones, which
    # Debian does not ship for these targets), against musl's libc.a, without PIE (the code
    # position-dependent too, but on mips64el: RELOC in lib.sh).
    export "CARGO_TARGET_${upper}_LINKER=$musl_gcc"
    export "CARGO_TARGET_${upper}_RUSTFLAGS=-C target-feature=+crt-static -C relocation-model=$RELOC -C link-self-contained=no -L native=$musl_lib -L native=$unwind_dir"
    export "CC_${lower}=$musl_gcc" "AR_${lower}=$GNU-ar"
    # ring's C code for the CPU and float ABI musl was built for (soft-float MIPS, ARMv6 with
    # VFP, not the cross gcc's defaults: hard-float MIPS, ARMv7 Thumb-2).
    read -r _ musl_cflags <<<"$MUSL_SRC"
    [ -z "$musl_cflags" ] || export "CFLAGS_${lower}=$musl_cflags"
fi
say "building ${BINS[*]} for $TARGET (${cargo[*]} --profile $PROFILE)"
build_start=$SECONDS
# One cargo run per binary: built together, Cargo would unify their dependencies' features, and
# each binary would carry what only the other one asks of a shared crate (rustls's, for one).
for b in "${BINS[@]}"; do
    nice -n 15 "${cargo[@]}" --locked --profile "$PROFILE" --target "$TARGET" --package "$b" --bin "$b" ||
        die "cargo build of $b for $TARGET failed"
    cp -f "$target_dir/$TARGET/$PROFILE/$b" "$out/$b" || die "cannot copy $b to $out"
done
say "built $TARGET in $((SECONDS - build_start))s; binaries in $out"
[ "${STATIC_SKIP_CHECKS:-0}" = 1 ] && exit 0
bash "$ROOT/scripts/static-checks.sh" "$TARGET"
