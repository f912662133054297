#!/usr/bin/env bash
# The one command: `bash Benchmarks/run.sh [--only B1,B3] [--repeat N] [--quick] ...`
# Installs what the participants need (libuv headers, wrk, OpenSSL's headers and command line,
# Python's uvloop), then run.py builds every participant, runs them and prints the table.
# Options are run.py's: `bash Benchmarks/run.sh --help`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! pkg-config --exists libuv 2>/dev/null; then
    echo "installing libuv1-dev ..." >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq libuv1-dev pkg-config >&2 \
        || echo "could not install libuv1-dev: the libuv and UVLoop participants will show n/a" >&2
fi

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk (B4b) ..." >&2
    as_root apt-get install -y -qq wrk >&2 \
        || { as_root apt-get update -qq && as_root apt-get install -y -qq wrk >&2; } \
        || echo "could not install wrk: B4b will show n/a" >&2
fi

if ! pkg-config --exists openssl 2>/dev/null || ! command -v openssl >/dev/null 2>&1; then
    echo "installing libssl-dev and openssl (B12, B12b) ..." >&2
    as_root apt-get install -y -qq libssl-dev openssl pkg-config >&2 \
        || { as_root apt-get update -qq && as_root apt-get install -y -qq libssl-dev openssl pkg-config >&2; } \
        || echo "could not install libssl-dev: B12 and B12b will show n/a" >&2
fi

if ! python3 -c "import uvloop" 2>/dev/null; then
    echo "installing uvloop ..." >&2
    python3 -m pip install --quiet uvloop >&2 \
        || echo "could not install uvloop: its column will show n/a" >&2
fi

exec python3 "$here/run.py" "$@"
