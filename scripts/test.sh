#!/usr/bin/env bash
# Runs the whole test suite: unit tests, pty integration tests and (as root) the tests that
# need network namespaces, TUN devices and nftables. Installs the Debian packages the tests
# use when run as root; as non-root, root-only tests report themselves as skipped
# (set EQLPLUS_REQUIRE_ROOT=1 to make them fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/packages.sh
ensure_packages procps coreutils iproute2 nftables conntrack tmux
ensure_promtool

cargo test --locked --all-targets
cargo test --locked --doc
# The README's install command, staged into a scratch directory and checked.
./scripts/check-install.sh
# A short soak: 20 random cuts under load (bench/soak.sh runs 100 on a release build).
if [[ $EUID -eq 0 ]]; then
    ./bench/soak.sh --debug --cuts 20 --seed 20261201
elif [[ "${EQLPLUS_REQUIRE_ROOT:-}" = 1 ]]; then
    echo "soak: needs root (EQLPLUS_REQUIRE_ROOT=1)" >&2
    exit 1
else
    echo "soak: skipped (needs root for network namespaces)"
fi
# The systemd unit under a real systemd, in a QEMU guest (the guest is built once, a few
# minutes, and cached under target/vm). Root only: it says it was skipped otherwise, and fails
# with EQLPLUS_REQUIRE_ROOT=1.
./tests/vm/systemd-guest.sh
# The kernel-PPP code (src/net/kernel_ppp.rs) against a kernel that has PPP: its unit tests in
# a small QEMU guest of Debian's kernel (built once in seconds and cached under target/vm),
# where /dev/ppp and N_PPP exist. Root only: it says it was skipped otherwise, and fails with
# EQLPLUS_REQUIRE_ROOT=1.
./tests/vm/kppp-check.sh
