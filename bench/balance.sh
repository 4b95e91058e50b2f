#!/usr/bin/env bash
# The balancer benchmark (issue 4): lines shaped with tc tbf, a browser-like page of many
# objects over parallel connections, aggregate goodput as a % of the sum of the line rates,
# for the project's balancer and for Linux ECMP multipath routing as the baseline.
# Root: it builds network namespaces of its own (eqb<pid>-*) and deletes them after each run.
#
#   sudo bench/balance.sh                        # N = 1, 2, 4 lines of 1 Mbit/s, 3 runs each
#   sudo bench/balance.sh --lines 4 --slots 6 --runs 5 --delay-ms 50
#   sudo bench/balance.sh --lines 2,4 --modes round-robin,least-loaded --udp-bulk-kbit 600
#                                                # + a QUIC-like UDP download on one line per page:
#                                                # does the balancer steer new connections away?
#   sudo bench/balance.sh --help                 # every option
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/packages.sh
ensure_packages iproute2 nftables ethtool conntrack
cargo build --release --locked --example balance_bench
exec ./target/release/examples/balance_bench "$@"
