#!/usr/bin/env bash
# The soak test (hardening issue): the real daemon over 4 simulated lines under a continuous
# load of new connections, while a chaos loop cuts lines (far end drops, goes silent, hangup/up,
# reload, nft flush ruleset). Prints the cuts, failed connections outside the cuts' windows
# (must be 0), daemon deaths (must be 0), RSS after warm-up and at the end, and kernel state
# left after stop (must be none); exits 0 only if all hold.
# Root: it builds network namespaces of its own (eqs<pid>-*) and deletes them at the end.
#
#   sudo bench/soak.sh                   # 100 cuts, release build
#   sudo bench/soak.sh --cuts 20 --seed 1
#   sudo bench/soak.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/packages.sh
ensure_packages iproute2 nftables
profile=release
if [ "${1:-}" = "--debug" ]; then
    profile=debug
    shift
fi
if [ "$profile" = release ]; then
    cargo build --release --locked --bin eqlplus-dialer --example soak
else
    cargo build --locked --bin eqlplus-dialer --example soak
fi
exec "./target/$profile/examples/soak" --bin "target/$profile/eqlplus-dialer" "$@"
