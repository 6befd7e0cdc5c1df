#!/usr/bin/env bash
# The whole test suite, as the README says to run it and as CI runs it:
# 0. cargo fmt --all --check and cargo clippy --workspace --all-targets -D warnings: the tree
#    stays formatted and free of lint warnings;
# 1. cargo test --workspace: unit tests, the codec's fuzz test, and the integration tests that
#    start the real binaries (and promtool, openssl, curl); promtool check rules and
#    promtool test rules on the alerting rules the README recommends (scripts/pushprox.rules.yml);
#    scripts/flag-tables.sh: the README's flag tables against each binary's --help (debug
#    binaries);
# 2. scripts/e2e.sh: real Prometheus and node_exporters scraped through the proxy and clients,
#    static targets and http_sd (builds the release binaries);
#    scripts/readme-e2e.sh: every Prometheus block of README.md, read from it and run as
#    written against our clients (with and without --sd.target), the Go client and nginx shards;
# 3. scripts/web-config-e2e.sh: the README's recommended internet-facing setup (one
#    --web.config.file with TLS, client certificates and a bcrypt user) with real Prometheus;
#    scripts/nginx-mtls.sh: the client through nginx checking client certificates;
#    scripts/shards-e2e.sh: three proxies behind nginx (hash consistent), 30 clients, Prometheus,
#    one proxy SIGKILLed and restarted, then each restarted with SIGTERM in turn: 0 failed
#    scrapes after the return and through the rolling restart (debug binaries);
#    scripts/rolling-restart.sh: a single proxy restarted (its gap, clients back within 1 s)
#    and an HA pair restarted in turn (0 failed scrapes), with the Go client too;
# 4. scripts/bench.sh --smoke: the benchmark's code paths with tiny numbers (no timings judged);
# 5. scripts/screenshot.sh: the proxy's status page rendered by headless Chromium;
#    scripts/systemd-units.sh: the systemd units verified (systemd-analyze) and their commands,
#    with the /etc/default files, started for README's TLS set-up;
# 6. scripts/release.sh --ci: static musl binaries for one target of each family (x86-64,
#    aarch64, armv7, s390x: scripts/build-static.sh --ci, their size budget, static, TLS), the
#    other three run under qemu-user-static relaying node_exporter scrapes to and from the x86-64
#    binaries (scripts/emulation.sh), their release archives and .debs, and the package test
#    (scripts/deb-test.sh: the amd64 .debs installed, run as their units, upgraded, purged).
#    It installs the cross toolchains and qemu itself: over 1.4 GiB of Debian packages, as root;
# 7. scripts/audit.sh: cargo audit of Cargo.lock against the RustSec snapshot in
#    ../shared/advisory-db (installs cargo-audit when missing);
# Needs: prometheus, prometheus-node-exporter, nginx, openssl, curl, python3, jq,
# chromium, musl-tools, file, systemd (systemd-analyze) (`bash .ci/run` installs them
# on Debian).
#
#   scripts/test.sh
#   PUSHPROX_BIN_DIR=target/debug scripts/test.sh    # e2e with the debug binaries, no release build
#
# Every part runs even when an earlier one fails; exits non-zero when any failed, after a summary.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

passed=0
failed=0
summary=()

# part NAME CMD...: runs one part and records how it went.
part() {
    local name=$1 start=$SECONDS
    shift
    printf '\n==> %s\n' "$name"
    if "$@"; then
        passed=$((passed + 1))
        summary+=("ok    $name ($((SECONDS - start))s)")
    else
        failed=$((failed + 1))
        summary+=("FAIL  $name ($((SECONDS - start))s)")
    fi
}

part "cargo fmt --check" cargo fmt --all --check
part "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
part "cargo test --workspace" cargo test --workspace
part "scripts/flag-tables.sh" env PUSHPROX_BIN_DIR=target/debug bash scripts/flag-tables.sh
part "promtool: scripts/pushprox.rules.yml" sh -c \
    'promtool check rules scripts/pushprox.rules.yml && promtool test rules scripts/pushprox.rules.test.yml'
part "scripts/e2e.sh" bash scripts/e2e.sh
part "scripts/readme-e2e.sh" env PUSHPROX_BIN_DIR=target/debug bash scripts/readme-e2e.sh
part "scripts/web-config-e2e.sh" bash scripts/web-config-e2e.sh
part "scripts/nginx-mtls.sh" bash scripts/nginx-mtls.sh
part "scripts/shards-e2e.sh" env PUSHPROX_BIN_DIR=target/debug bash scripts/shards-e2e.sh
part "scripts/rolling-restart.sh" env PUSHPROX_BIN_DIR=target/debug bash scripts/rolling-restart.sh
part "scripts/bench.sh --smoke" env PUSHPROX_BIN_DIR=target/debug bash scripts/bench.sh --smoke
part "scripts/screenshot.sh" env PUSHPROX_BIN_DIR=target/debug bash scripts/screenshot.sh
part "scripts/systemd-units.sh" env PUSHPROX_BIN_DIR=target/debug bash scripts/systemd-units.sh
part "scripts/release.sh --ci" bash scripts/release.sh --ci
part "scripts/audit.sh" bash scripts/audit.sh

printf '\n==> summary\n'
printf '%s\n' "${summary[@]}"
echo "test: $passed passed, $failed failed"
[ "$failed" = 0 ]
