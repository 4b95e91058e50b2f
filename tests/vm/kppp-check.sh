#!/usr/bin/env bash
# kppp-check.sh: the kernel-PPP unit tests (net::kernel_ppp) against a kernel that has PPP, in
# the QEMU guest of tests/vm/kppp-guest.sh (this machine's kernel may have no CONFIG_PPP).
#
#   tests/vm/kppp-check.sh [kppp-guest.sh options: --timeout S, --accel A, --quiet, --rebuild…]
#
# Builds the library's test binary (`cargo test --locked --lib --no-run`), boots the guest with
# it in /opt/eql and tests/vm/kppp/unit-tests.sh as the payload, which runs the tests filtered
# to net::kernel_ppp with EQLPLUS_REQUIRE_KERNEL_PPP=1 (there the real-kernel tests fail
# instead of skipping) and checks that their real-kernel parts ran.
# Then boots it again with eqlplus-dialer and tests/vm/kppp/dialer.sh: the daemon
# with slave_kind = "ppp" against our PPP answer role over a pty (up on a PPP device, LCP's
# values in the kernel, 1 MiB byte-exact, echoes under load, hangup and SIGKILL leave no
# device). Exits 0 only if everything passed in both. Root only, as kppp-guest.sh: it says
# SKIPPED otherwise (EQLPLUS_REQUIRE_ROOT=1: fails), and SKIPPED where QEMU cannot start.
set -euo pipefail
cd "$(dirname "$0")/../.."

VM_NAME="kppp guest"
VM_SKIP_WORD=SKIPPED
. tests/vm/lib.sh
# Before building anything: kppp-guest.sh would skip anyway.
vm_require_root "modules and device nodes in the guest image, QEMU"

# The lib target's test executable, from cargo's JSON messages (its diagnostics as usual on
# stderr).
json=$(cargo test --locked -p eqlplus-dialer --lib --no-run --message-format=json-render-diagnostics) || {
    echo "kppp-check: cargo could not build the library's tests" >&2
    exit 1
}
exe=$(grep '"reason":"compiler-artifact"' <<<"$json" | grep '"kind":\["lib"\]' | grep '"test":true' |
    grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1)
[[ -n $exe && -x $exe ]] || {
    echo "kppp-check: cargo named no test executable of the lib target" >&2
    exit 1
}
echo "[kppp-check] test binary: $exe" >&2
rc=0
tests/vm/kppp-guest.sh --bin "$exe" --script tests/vm/kppp/unit-tests.sh "$@" || rc=$?
# Then the daemon itself on kernel PPP (tests/vm/kppp/dialer.sh), in a guest of its own.
cargo build --locked --bin eqlplus-dialer || {
    echo "kppp-check: cargo could not build eqlplus-dialer" >&2
    exit 1
}
tests/vm/kppp-guest.sh --bin target/debug/eqlplus-dialer --script tests/vm/kppp/dialer.sh "$@" || rc=$?
exit "$rc"
