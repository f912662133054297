#!/usr/bin/env bash
# Soak: every workload of uvloop-stress (spawns under each watcher, TCP echo, timers and
# cross-thread callbacks on two loops) in a loop for N seconds (default 60), printing descriptors,
# threads, children and resident memory at the start, after each round, and at the end.
#   bash scripts/soak.sh          # 60 s
#   bash scripts/soak.sh 3600     # an hour
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product uvloop-stress >/dev/null
exec .build/release/uvloop-stress --soak --seconds "${1:-60}"
