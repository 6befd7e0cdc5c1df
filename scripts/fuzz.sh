#!/usr/bin/env bash
# Runs the randomized codec test (protocol/tests/fuzz.rs) much longer than CI does: a release
# build, millions of cases, a new seed per run. CI runs the same test with 20,000 cases.
#
#   scripts/fuzz.sh                                  # one run of 2,000,000 cases, random seed
#   FUZZ_SECONDS=600 scripts/fuzz.sh                 # runs with new seeds until 10 minutes are up
#   FUZZ_SEED=0x1f2e FUZZ_ITERS=100000 scripts/fuzz.sh   # one run with a given seed
#
# FUZZ_RUN_SECONDS (default 20) caps one run when FUZZ_SECONDS is set, so a budget is spread
# over several seeds. Each run prints its seed, cases, cases/s and peak memory (VmHWM); its
# whole output is kept in target/fuzz/. A failing run prints each distinct failure with its
# input in hex, a shrunk input and the command that replays it; the script then exits non-zero.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

iters=${FUZZ_ITERS:-2000000}
budget=${FUZZ_SECONDS:-}
run_cap=${FUZZ_RUN_SECONDS:-20}
seed=${FUZZ_SEED:-}
logs=${CARGO_TARGET_DIR:-target}/fuzz
mkdir -p "$logs" || exit 1

say() { printf 'fuzz: %s\n' "$*"; }

new_seed() { printf '0x%s' "$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')"; }

say "building the test in release mode"
cargo test -q --release -p pushprox-protocol --test fuzz --no-run || exit 1

start=$SECONDS
runs=0
failed=0
total_cases=0
total_secs=0
peak_kib=0
broken=0
seeds=()

# run SEED CASES SECONDS: one run of the test; prints its summary line.
run() {
    local seed=$1 cases=$2 secs=$3 log rc line began=$SECONDS
    log=$logs/run-$seed.log
    env PUSHPROX_FUZZ_SEED="$seed" PUSHPROX_FUZZ_ITERS="$cases" ${secs:+PUSHPROX_FUZZ_SECONDS="$secs"} \
        cargo test -q --release -p pushprox-protocol --test fuzz fuzz_codec -- --exact --nocapture \
        >"$log" 2>&1
    rc=$?
    runs=$((runs + 1))
    seeds+=("$seed")
    line=$(grep -m1 -E '^fuzz: seed=.* iterations=[0-9]+ elapsed=' "$log")
    if [ -n "$line" ]; then
        local n e k
        n=$(sed -E 's/.* iterations=([0-9]+).*/\1/' <<<"$line")
        e=$(sed -E 's/.* elapsed=([0-9.]+)s.*/\1/' <<<"$line")
        k=$(sed -E 's/.* vmhwm_kib=([0-9]+).*/\1/' <<<"$line")
        total_cases=$((total_cases + n))
        total_secs=$(awk -v a="$total_secs" -v b="$e" 'BEGIN { print a + b }')
        [[ $k =~ ^[0-9]+$ ]] && [ "$k" -gt "$peak_kib" ] && peak_kib=$k
        say "run $runs: ${line#fuzz: } wall=$((SECONDS - began))s"
    else
        say "run $runs: seed=$seed ended without a summary (crash, abort or hang; see $log)"
        broken=1
    fi
    if [ "$rc" != 0 ]; then
        failed=$((failed + 1))
        grep -E '^(FAILURE|  (first|detail|input|minimal|replay)|fuzz: case .* made no progress|fuzz: (input|replay):)' "$log" | head -200
        say "run $runs FAILED (exit $rc); full output in $log"
    fi
}

if [ -n "$budget" ]; then
    say "running for ${budget}s, at most ${run_cap}s per seed"
    while :; do
        left=$((budget - (SECONDS - start)))
        [ "$left" -gt 0 ] || break
        secs=$((left < run_cap ? left : run_cap))
        run "${seed:-$(new_seed)}" 1000000000000 "$secs"
        seed=
        # A run that could not even report is not worth repeating with another seed.
        [ "$broken" = 0 ] || break
    done
else
    run "${seed:-$(new_seed)}" "$iters" ""
fi

rate=$(awk -v n="$total_cases" -v s="$total_secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
say "summary: $runs runs, $total_cases cases in ${total_secs}s of fuzzing ($rate cases/s), \
peak memory $((peak_kib / 1024)) MiB ($peak_kib KiB VmHWM), $failed failed"
say "seeds: ${seeds[*]}"
[ "$failed" = 0 ]
