#!/usr/bin/env bash
# The kernel PPP benchmark (issue 15): in the QEMU guest of tests/vm/kppp-guest.sh (a kernel
# with PPP; this machine's may have none), N MiB over one unpaced simulated line, first with
# slave_kind = "ppp" (the kernel frames, pppN carries the packets) and then with "tun" (the
# daemon frames, a TUN device carries them), side by side: throughput, and the CPU seconds per
# GB of the daemon and of the simulated modem + ISP (the far end, the same in both).
# With --paced KBIT the far end sends at a modem's pace (a tbf of KBIT kbit/s on the ISP's
# side) and the daemon's CPU is also given per minute, on an idle line and during the
# download: what it costs to keep a slow line up.
# Root (the guest image, QEMU). Under TCG the guest's CPU is slow: compare the two, not with
# real hardware.
#
#   sudo bench/kernel-ppp.sh                 # 16 MiB each
#   sudo bench/kernel-ppp.sh --mib 64 --smp 2
#   sudo bench/kernel-ppp.sh --mib 1 --paced 320
set -euo pipefail
cd "$(dirname "$0")/.."
mib=16
smp=1
paced=""
while [ $# -gt 0 ]; do
    case "$1" in
        --mib) mib=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --paced) paced=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
cargo build --release --locked --bin eqlplus-dialer
exec tests/vm/kppp-guest.sh --bin target/release/eqlplus-dialer --script tests/vm/kppp/dialer.sh \
    --env "KPPP_BENCH=$mib" ${paced:+--env "KPPP_PACED=$paced"} --smp "$smp" --timeout 1800 --quiet
