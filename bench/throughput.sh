#!/usr/bin/env bash
# The throughput ceiling of one line (issue 13): one simulated line without pacing, the whole
# product path (internet TCP → the ISP's TUN → our PPP in answer role → sim modem on a pty →
# the daemon's PPP → its TUN slave → kernel → LAN TCP). Moves 1 GB (or 30 s) each way per run,
# byte-checked, and prints Mbit/s and CPU seconds per GB of the daemon, of the far end (sim
# modem + answer-role PPP) and of the whole path; the median of 3 runs last.
# Root: it builds network namespaces of its own (eqtp<pid>-*) and deletes them at the end.
#
#   sudo bench/throughput.sh                     # 3 runs, release build
#   sudo bench/throughput.sh --runs 5 --seconds 10
#   sudo bench/throughput.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/packages.sh
ensure_packages iproute2 nftables
cargo build --release --locked --bin eqlplus-dialer --example throughput_bench
exec ./target/release/examples/throughput_bench --bin target/release/eqlplus-dialer "$@"
