#!/usr/bin/env bash
# Builds fully static pushprox-proxy and pushprox-client (musl libc, Cargo profile `static`) for
# x86-64, 64-bit ARM or 32-bit ARM Linux, copies them to target/static/TRIPLE/, and checks each
# one: the client at most 2 MiB and the proxy at most 3 MiB (it carries the TLS server, the web
# config's YAML and bcrypt), statically linked (`file`; no program interpreter and no shared library
# needed, per `readelf`; the ARM builds have no dynamic section at all), runs with an empty
# environment (`env -i ... --version`, `--help`), and keeps TLS: the client polls a local https
# server through rustls when given our test CA by --tls.cacert or SSL_CERT_FILE (and refuses it
# with only the system's CA bundle), and the static proxy serves https to the static client,
# relaying one scrape. ARM binaries run under Debian's qemu-user-static for those checks.
#
#   scripts/build-static.sh                                      x86_64-unknown-linux-musl
#   scripts/build-static.sh --target aarch64-unknown-linux-musl  64-bit ARM (arm64)
#   scripts/build-static.sh --target armv7-unknown-linux-musleabihf   32-bit ARM, hard float
#   scripts/build-static.sh --all                                all three, one after the other
#   STATIC_MAX_BYTES=2500000 scripts/build-static.sh    one size budget for both binaries
#
# Installs what is missing (apt-get needs root), and why each piece is there:
# - x86-64: the Rust target x86_64-unknown-linux-musl (rustup; its std is prebuilt), musl-gcc
#   for ring's C code (Debian's musl-tools).
# - ARM: rustup cannot download other targets' std here, so std is built from source:
#   Debian's rustc-web and cargo-web (1.96) with rust-web-src (std's source; their sysroot is
#   /usr, where -Zbuild-std finds it; RUSTC_BOOTSTRAP=1 allows -Z on a stable compiler; the
#   first build fetches std's own dependencies from crates.io). /usr/bin/cargo is run by path,
#   as the cargo first on PATH is rustup's.
#   gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf: the cross compilers, linkers and `ar`.
#   musl-dev:arm64 / musl-dev:armhf (after `dpkg --add-architecture`): musl's crt objects and
#   libc.a in /usr/lib/<arch>-linux-musl*, and the aarch64-linux-musl-gcc /
#   arm-linux-musleabihf-gcc wrappers that compile ring's C code and link against them.
#   libgcc-11-dev-arm64-cross: std links libunwind.a, for which gcc's libgcc_eh.a stands in; gcc
#   12's for aarch64 calls glibc's _dl_find_object, which musl lacks, gcc 11's does not (armhf's
#   gcc 12 one links).
#   qemu-user-static: runs the ARM binaries for the checks (as `qemu-aarch64-static ./bin`: no
#   binfmt_misc registration is assumed). ca-certificates: Debian's cargo reaches crates.io with
#   the system's CA bundle.
# - all: file, binutils (readelf), openssl, python3 for the checks.
# The ARM binaries link -static -no-pie (relocation-model=static): Debian's musl 1.2.3 lacks the
# packed relocations that keep the x86-64 build a small static PIE.
#
# Ends with one line per binary, such as
#   pushprox-proxy: 1.23 MiB (1290240 bytes), static, runs with empty env, TLS (rustls) ok
# and exits non-zero when the build or any check fails. What it starts listens on 127.0.0.1
# only and is stopped on exit.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

ALL_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)
PROFILE=static
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
        --all) targets+=("${ALL_TARGETS[@]}"); shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(x86_64-unknown-linux-musl)

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
case "$TARGET" in
    x86_64-unknown-linux-musl) ;;
    # DEB_ARCH: Debian's name; GNU: the cross compiler's prefix; MUSL: musl's triplet (its
    # gcc wrapper and library directory); UNWIND_GCC: the gcc whose libgcc_eh.a links.
    aarch64-unknown-linux-musl)
        DEB_ARCH=arm64 GNU=aarch64-linux-gnu MUSL=aarch64-linux-musl QEMU=qemu-aarch64-static
        UNWIND_GCC=11 UNWIND_PKG=libgcc-11-dev-arm64-cross ;;
    armv7-unknown-linux-musleabihf)
        DEB_ARCH=armhf GNU=arm-linux-gnueabihf MUSL=arm-linux-musleabihf QEMU=qemu-arm-static
        UNWIND_GCC=12 UNWIND_PKG=libgcc-12-dev-armhf-cross ;;
    *) die "unknown target $TARGET; known: ${ALL_TARGETS[*]}" ;;
esac

# --- what the build and the checks need --------------------------------------------------------

export DEBIAN_FRONTEND=noninteractive
# Other builds on the machine may hold dpkg's lock for a while: wait for it, do not fail.
APT=(apt-get -o DPkg::Lock::Timeout=600)
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
# apt_install PACKAGE...: one `apt-get update`, then the install.
apt_install() {
    can_apt || die "missing $*: install them as root (Debian: apt-get install $*)"
    say "installing $*"
    # A mirror being synced can fail the update of one architecture's index while the others
    # are fine; the install then tells whether what we need was there.
    "${APT[@]}" update -qq || warn "apt-get update reported errors; trying the install anyway"
    "${APT[@]}" install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# command or file -> the Debian package that brings it
declare -A package_of=([file]=file [openssl]=openssl [python3]=python3 [readelf]=binutils)
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
        [$GNU-gcc]=gcc-$GNU [/usr/lib/gcc-cross/$GNU/$UNWIND_GCC/libgcc_eh.a]=$UNWIND_PKG
        [$QEMU]=qemu-user-static [/etc/ssl/certs/ca-certificates.crt]=ca-certificates)
fi
missing=()
for want in "${!package_of[@]}"; do
    case "$want" in
        /*) [ -e "$want" ] ;;
        *) command -v "$want" >/dev/null ;;
    esac || missing+=("${package_of[$want]}")
done
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"

if [ "$TARGET" != x86_64-unknown-linux-musl ] &&
    ! { [ -x "/usr/bin/$MUSL-gcc" ] && [ -f "/usr/lib/$MUSL/libc.a" ]; }; then
    # The package of another architecture: dpkg must know that architecture first.
    if ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
        can_apt || die "musl-dev:$DEB_ARCH is missing: as root, dpkg --add-architecture $DEB_ARCH && apt-get update && apt-get install musl-dev:$DEB_ARCH"
        say "adding the architecture $DEB_ARCH to dpkg"
        dpkg --add-architecture "$DEB_ARCH" || die "dpkg --add-architecture $DEB_ARCH failed"
    fi
    apt_install "musl-dev:$DEB_ARCH"
    [ -f "/usr/lib/$MUSL/libc.a" ] || die "musl-dev:$DEB_ARCH installed, but /usr/lib/$MUSL/libc.a is not there"
fi

# --- build --------------------------------------------------------------------------------------

cd "$ROOT" || exit 1
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
out=$target_dir/static/$TARGET
mkdir -p "$out" || exit 1
RUN=() # what runs a binary of this target here: nothing for x86-64, qemu for ARM
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
    RUN=("$(command -v "$QEMU")")
    cargo=(/usr/bin/cargo build "-Zbuild-std=std,panic_abort")
    export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
    # std wants libunwind.a: gcc's libgcc_eh.a under that name, in a directory of its own.
    unwind_dir=$target_dir/static/unwind/$TARGET
    mkdir -p "$unwind_dir" &&
        ln -sf "/usr/lib/gcc-cross/$GNU/$UNWIND_GCC/libgcc_eh.a" "$unwind_dir/libunwind.a" || exit 1
    upper=${TARGET^^}
    upper=${upper//-/_}
    lower=${TARGET//-/_}
    # Linked by musl's gcc wrapper (its crt objects, not rustc's self-contained ones, which
    # Debian does not ship for ARM), against /usr/lib/$MUSL/libc.a, without PIE.
    export "CARGO_TARGET_${upper}_LINKER=$MUSL-gcc"
    export "CARGO_TARGET_${upper}_RUSTFLAGS=-C target-feature=+crt-static -C relocation-model=static -C link-self-contained=no -L native=/usr/lib/$MUSL -L native=$unwind_dir"
    export "CC_${lower}=$MUSL-gcc" "AR_${lower}=$GNU-ar"
fi
say "building ${BINS[*]} for $TARGET (${cargo[*]} --profile $PROFILE)"
build_start=$SECONDS
# One cargo run per binary: built together, Cargo would unify their dependencies' features, and
# each binary would carry what only the other one asks of a shared crate (rustls's, for one).
for b in "${BINS[@]}"; do
    "${cargo[@]}" --locked --profile "$PROFILE" --target "$TARGET" --package "$b" --bin "$b" ||
        die "cargo build of $b for $TARGET failed"
    cp -f "$target_dir/$TARGET/$PROFILE/$b" "$out/$b" || die "cannot copy $b to $out"
done
build_secs=$((SECONDS - build_start))
say "built in ${build_secs}s; binaries in $out"
# --- checks: size, static linking, an empty environment ----------------------------------------

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

# --- checks: TLS --------------------------------------------------------------------------------

# A CA and a server certificate for 127.0.0.1 signed by it (rustls refuses a CA certificate as
# a server's, which is what a bare `openssl req -x509` makes).
(
    cd "$tmp" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
            -subj "/CN=pushprox static check CA" -keyout ca.key -out ca.pem &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=127.0.0.1" -keyout server.key -out server.csr &&
        printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
            -extfile server.ext -out server.pem
) >"$tmp/openssl.log" 2>&1 ||
    die "openssl could not make the test certificates: $(tail -n 3 "$tmp/openssl.log" | one_line)"

# wait_line LOG PATTERN PID: waits up to 5 s, while PID lives, for a line of LOG matching the
# extended regex PATTERN, and prints it.
wait_line() {
    local line
    for _ in $(seq 50); do
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
start_bg https-server "$tmp/server.log" python3 "$tmp/https_server.py" "$tmp/server.pem" "$tmp/server.key"
port=$(wait_line "$tmp/server.log" '^listening' "$LAST_PID" | awk '{ print $2 }')
[ -n "$port" ] || die "the test https server did not start: $(tail -n 3 "$tmp/server.log" | one_line)"

# poll_once LOG [FLAG...]: runs the static client, with an empty environment (plus the
# VAR=value words of the array poll_env), against that server until its log shows how the
# first poll went; 5 s at most.
poll_env=()
poll_once() {
    local log=$1
    shift
    start_bg pushprox-client "$log" timeout 5 env -i "${poll_env[@]}" "${RUN[@]}" "$client" \
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
poll_once "$tmp/client-trusting.log" --tls.cacert "$tmp/ca.pem"
if grep -q 'POST /poll' "$tmp/server.log" && grep -q 'status 200' "$tmp/client-trusting.log"; then
    say "client with --tls.cacert: $(grep -m 1 -o 'poll of.*' "$tmp/client-trusting.log" | cut -c 1-150)…"
else
    fail pushprox-client "its poll did not get through TLS to a local https server (client: $(tail -n 2 "$tmp/client-trusting.log" | one_line); server: $(tail -n 2 "$tmp/server.log" | one_line))"
    client_tls=0
fi
# SSL_CERT_FILE replaces the system's bundle, as for Go programs and OpenSSL.
poll_env=("SSL_CERT_FILE=$tmp/ca.pem")
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
    --tls.cert "$tmp/server.pem" --tls.key "$tmp/server.key"
proxy_pid=$LAST_PID
proxy_addr=$(wait_line "$tmp/proxy.log" 'listening address=[^ ]+ scheme=https' "$proxy_pid" |
    sed -E 's/.*listening address=([^ ]+).*/\1/')
if [ -z "$proxy_addr" ]; then
    fail pushprox-proxy "it did not start serving https (log: $(tail -n 3 "$tmp/proxy.log" | one_line))"
    proxy_tls=0
else
    start_bg pushprox-client "$tmp/client-proxy.log" env -i "${RUN[@]}" "$client" \
        --proxy-url "https://$proxy_addr/" --tls.cacert "$tmp/ca.pem" \
        --fqdn 127.0.0.1 --metrics-addr "127.0.0.1:$metrics_port"
    if wait_line "$tmp/proxy.log" 'client registered fqdn=127\.0\.0\.1' "$proxy_pid" >/dev/null; then
        if scrape=$(
            python3 - "$proxy_addr" "$tmp/ca.pem" "http://127.0.0.1:$metrics_port/metrics" <<'PY'
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
echo "build: ${build_secs}s (cargo profile $PROFILE, target $TARGET); binaries in $out"
exit "$failed"
