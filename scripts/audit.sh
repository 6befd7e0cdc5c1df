#!/usr/bin/env bash
# The dependency audit: `cargo audit` over Cargo.lock against the RustSec advisory database,
# offline, from the snapshot beside the repository (../shared/advisory-db; its commit is in its
# SNAPSHOT file). Fails on any vulnerability, and on any "unmaintained", "unsound" or yanked
# notice that .cargo/audit.toml does not justify in one line.
#
#   scripts/audit.sh
#   PUSHPROX_ADVISORY_DB=/path/to/advisory-db scripts/audit.sh   another copy of the database
#
# Installs cargo-audit with `cargo install --locked` when it is missing (crates.io).
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
need cargo "install Rust with rustup" || exit 1

DB=${PUSHPROX_ADVISORY_DB:-$ROOT/../shared/advisory-db}
[ -d "$DB/crates" ] || {
    echo "$SCRIPT: no advisory database at $DB (set PUSHPROX_ADVISORY_DB to a copy of rustsec/advisory-db)" >&2
    exit 1
}

if ! command -v cargo-audit >/dev/null 2>&1; then
    say "installing cargo-audit (cargo install --locked cargo-audit)"
    cargo install --locked --quiet --no-default-features cargo-audit || {
        echo "$SCRIPT: cargo install cargo-audit failed" >&2
        exit 1
    }
fi

say "advisory database $(cat "$DB/SNAPSHOT" 2>/dev/null || echo "(no SNAPSHOT file)") at $DB"
cd "$ROOT" || exit 1
# --no-fetch: the snapshot is the database; --stale: it is older than cargo-audit would like.
# -D warnings: unmaintained, unsound and yanked notices fail too, unless audit.toml ignores them.
cargo audit --db "$DB" --no-fetch --stale --deny warnings
