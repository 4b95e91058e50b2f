#!/usr/bin/env bash
# The README's first command: the whole program on simulated modems and ISPs, no hardware.
# Needs root: it builds network namespaces (nothing touches this machine's own network).
# Extra arguments go to `eqlplus-dialer demo` (e.g. --lines 4 --rate 256kbit).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then
    exec sudo -E "$0" "$@"
fi
. scripts/packages.sh
ensure_packages iproute2 nftables
cargo build --release --locked --quiet
exec target/release/eqlplus-dialer demo "$@"
