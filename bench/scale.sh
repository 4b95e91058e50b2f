#!/usr/bin/env bash
# The scale benchmark (issue 13): N simulated lines (64 by default, paced to 256 kbit/s) in ONE
# daemon. Prints, staged at 8, 32 and N lines: time until all are up, RSS, idle CPU (over
# --idle-secs) and `status` latency; with N lines: CPU per Mbit/s under a page load, the
# failover of one line (its ISP hangs up), shutdown and a cold start of all N.
# Root: it builds network namespaces of its own (eqsc<pid>-*) and deletes them at the end.
#
#   sudo bench/scale.sh                          # 64 lines, 60 s idle per stage (~6 minutes)
#   sudo bench/scale.sh --lines 32 --idle-secs 20 --rate 512kbit --strace-secs 10
#   sudo bench/scale.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/packages.sh
ensure_packages iproute2 nftables
cargo build --release --locked --bin eqlplus-dialer --example scale_bench
EQLPLUS_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo +changes)" \
    exec ./target/release/examples/scale_bench --bin target/release/eqlplus-dialer "$@"
