#!/usr/bin/env bash
# The README's flag tables checked against each binary's --help, both ways: a flag in --help
# and in no table (the binary's own, or "Both binaries"), or in a table and not in --help,
# fails; so does a default that differs (the table's default cell starts with the `value`
# --help prints as [default: value], and with no code span when --help prints none), and a Go
# column that differs from the [Go: ...] tag that ends each flag's help.
#
#   scripts/flag-tables.sh                                # builds the release binaries first
#   PUSHPROX_BIN_DIR=target/debug scripts/flag-tables.sh  # uses binaries already built there
#
# Needs: python3.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

need python3 || { echo "$SCRIPT: python3 is missing" >&2; exit 1; }
pushprox_bins || exit 1

python3 - "$ROOT/README.md" "$PROXY_BIN" "$CLIENT_BIN" <<'PY'
import re, subprocess, sys

readme, bins = sys.argv[1], {"pushprox-proxy": sys.argv[2], "pushprox-client": sys.argv[3]}
FLAG = re.compile(r"--[A-Za-z0-9][\w.-]*")
ENTRY = re.compile(r"^\s+(?:-\w, )?(--[A-Za-z0-9][\w.-]*)(?: <[^>]+>)?(?:\.\.\.)?\s*$")

def from_help(binary):
    """{flag: (default or None, Go tag or None)} from `binary --help`."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        sys.exit(f"{binary} --help exited {out.returncode}: {out.stderr}")
    flags, name, text = {}, None, []
    def close():
        if name and name not in ("--help", "--version"):
            body = " ".join(text)
            default = re.search(r"\[default: ([^\]]*)\]", body)
            go = re.search(r"\[Go: ([^\]]*)\]", body)
            flags[name] = (default and default.group(1), go and go.group(1))
    for line in out.stdout.splitlines():
        m = ENTRY.match(line)
        if m:
            close()
            name, text = m.group(1), []
        elif name and line.startswith(" "):
            text.append(line.strip())
        elif name and line.strip():
            close()
            name = None
    close()
    return flags

def tables(path):
    """{section: {flag: (default cell, Go cell)}} from the "## Flags" part of the README."""
    found, section, in_flags = {}, None, False
    for line in open(path, encoding="utf-8"):
        if line.startswith("## "):
            in_flags = line.strip() == "## Flags"
        elif in_flags and line.startswith("### "):
            section = line[4:].strip()
            found.setdefault(section, {})
        elif in_flags and section and line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 4 or cells[0] == "flag":
                continue
            for flag in FLAG.findall(cells[0]):
                found[section][flag] = (cells[1], cells[2])
    return found

def go_matches(tag, cell):
    if tag.startswith("same"):
        return cell.startswith("same")
    if tag.startswith("none"):
        return cell == "—"
    return set(FLAG.findall(tag)) == set(FLAG.findall(cell)) and FLAG.search(tag) is not None

problems = []
readme_tables = tables(readme)
both = readme_tables.get("Both binaries", {})
for binary, path in bins.items():
    helped = from_help(path)
    table = {**both, **readme_tables.get(binary, {})}
    if not readme_tables.get(binary):
        problems.append(f"README.md has no '### {binary}' flag table")
    for flag, (default, go) in helped.items():
        if flag not in table:
            problems.append(f"{binary} {flag}: in --help, missing from the README's flag tables")
            continue
        cell_default, cell_go = table[flag]
        if default is not None and not cell_default.startswith(f"`{default}`"):
            problems.append(f"{binary} {flag}: --help says [default: {default}], the README {cell_default!r}")
        if default is None and cell_default.startswith("`"):
            problems.append(f"{binary} {flag}: --help shows no default, the README {cell_default!r}")
        if go is None:
            problems.append(f"{binary} {flag}: its help does not end with [Go: same], [Go: --name] or [Go: none]")
        elif not go_matches(go, cell_go):
            problems.append(f"{binary} {flag}: --help says [Go: {go}], the README's Go column {cell_go!r}")
    for flag in readme_tables.get(binary, {}):
        if flag not in helped:
            problems.append(f"{binary} {flag}: in the README's table, not a flag of {binary} --help")
for flag in both:
    for binary, path in bins.items():
        if flag not in from_help(path):
            problems.append(f"{flag}: in the README's 'Both binaries' table, not a flag of {binary}")
for p in problems:
    print(f"flag-tables: {p}", file=sys.stderr)
if problems:
    sys.exit(f"flag-tables: {len(problems)} difference(s) between the README and --help")
print(f"flag-tables: README flag tables match --help of {', '.join(bins)}")
PY
