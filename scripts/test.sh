#!/usr/bin/env bash
# Runs the whole test suite: unit tests, pty integration tests and (as root) the tests that
# need network namespaces, TUN devices and nftables. Installs the Debian packages the tests
# use when run as root; as non-root, root-only tests report themselves as skipped
# (set EQLPLUS_REQUIRE_ROOT=1 to make them fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(procps coreutils tmux)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $EUID -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "note: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    fi
fi

cargo test --locked --all-targets
cargo test --locked --doc
