#!/usr/bin/env bash
# Runs the randomized codec test (protocol/tests/fuzz.rs, on proptest) much longer than CI
# does: a release build, many cases per property, a new random seed per run unless one is given.
#
#   scripts/fuzz.sh                                  # 200,000 cases per property
#   PROPTEST_CASES=2000000 scripts/fuzz.sh           # more
#   PROPTEST_RNG_SEED=12345 scripts/fuzz.sh          # a fixed seed, to replay a run
#   scripts/fuzz.sh codec                            # one property (codec, text, chunked, endless)
#
# A failure is shrunk by proptest and printed with its minimal input; its seed is appended to
# protocol/tests/fuzz.proptest-regressions, which every later run (CI's too) replays first:
# commit that file with the fix. Exits non-zero when a property fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

export PROPTEST_CASES=${PROPTEST_CASES:-200000}
say() { printf 'fuzz: %s\n' "$*"; }

say "building the test in release mode"
cargo test -q --release -p pushprox-protocol --test fuzz --no-run || exit 1
say "PROPTEST_CASES=$PROPTEST_CASES PROPTEST_RNG_SEED=${PROPTEST_RNG_SEED:-random}"
start=$SECONDS
cargo test -q --release -p pushprox-protocol --test fuzz -- --nocapture "$@"
rc=$?
say "done in $((SECONDS - start))s, exit $rc"
exit "$rc"
