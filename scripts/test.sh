#!/usr/bin/env bash
# The whole test suite, as the README says to run it and as CI runs it:
# 1. cargo test --workspace: unit tests and the integration tests that start the real binaries;
# 2. scripts/e2e.sh: real Prometheus and node_exporters scraped through the proxy and clients
#    (builds the release binaries; needs prometheus, promtool, node_exporter, curl, python3).
#
#   scripts/test.sh
#   PUSHPROX_BIN_DIR=target/debug scripts/test.sh    # e2e with the debug binaries, no release build
#
# Both parts run even when the first fails; exits non-zero when either failed, after a summary.
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

part "cargo test --workspace" cargo test --workspace
part "scripts/e2e.sh" bash scripts/e2e.sh

printf '\n==> summary\n'
printf '%s\n' "${summary[@]}"
echo "test: $passed passed, $failed failed"
[ "$failed" = 0 ]
