#!/bin/sh
# unit-tests.sh: the payload of tests/vm/kppp-check.sh, run by busybox sh as root in the kppp
# guest (tests/vm/kppp-guest.sh), where the kernel has PPP. Checks the guest (/dev/ppp, the
# N_PPP discipline, TUN, an nftables table like the balancer's), then runs the library's test
# binary (/opt/eql/eqlplus_dialer-*) filtered to net::kernel_ppp, one test at a time, with
# EQLPLUS_REQUIRE_KERNEL_PPP=1: a test whose real-kernel part cannot run fails instead of
# skipping. Each real-kernel part says so on stderr ("kernel_ppp real kernel: NAME: …"); every
# name in REAL_TESTS must have said it. Results: KPPP-RESULT PASS|FAIL NAME DETAIL lines; the
# exit status is the number of failures (capped at 1).
set -u

# The tests of src/net/kernel_ppp.rs whose real-kernel part must have run here.
REAL_TESTS="attach_on_a_pty_reaches_n_ppp_and_back
a_tty_left_in_n_ppp_goes_back_to_n_tty
unit_settings_reach_the_kernel
frames_cross_a_real_channel_and_unit
ip_passes_only_after_npmode_pass
two_channels_make_one_multilink_unit"

failures=0
pass() { echo "KPPP-RESULT PASS $*"; }
fail() {
	echo "KPPP-RESULT FAIL $*"
	failures=$((failures + 1))
}

# --- the guest has what the tests need ---------------------------------------------------------
if [ -c /dev/ppp ]; then pass dev-ppp "$(ls -l /dev/ppp)"; else fail dev-ppp "no /dev/ppp"; fi
if grep -Eq '^ppp +3$' /proc/tty/ldiscs; then
	pass n-ppp "line discipline 3 registered (ppp_async)"
else
	fail n-ppp "no N_PPP in /proc/tty/ldiscs: $(tr '\n' ' ' </proc/tty/ldiscs)"
fi
if ip tuntap add dev kppptun0 mode tun && ip link show kppptun0 >/dev/null && ip tuntap del dev kppptun0 mode tun; then
	pass tun "ip tuntap add/del"
else
	fail tun "no TUN device"
fi
# The shapes of the balancer's table (src/balancer/kernel.rs): ct mark, numgen map, dynamic
# set with timeout, fib, nat masquerade. The modules it needs are loaded, or load on demand.
cat >/tmp/kppp.nft <<'EOF'
table ip kpppcheck {
  set slaves { type ifname; }
  map pick { typeof numgen inc mod 4 : meta mark; }
  map sticky { typeof ip saddr . ip daddr : meta mark; flags dynamic,timeout; timeout 60s; }
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    ct mark != 0 meta mark set ct mark return
    ct state new fib daddr type local return
    ct state new meta mark set numgen inc mod 4 map @pick ct mark set meta mark
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname @slaves masquerade
  }
}
EOF
if nft -f /tmp/kppp.nft 2>/tmp/nft.err && nft list table ip kpppcheck >/dev/null && nft delete table ip kpppcheck; then
	pass nftables "a table with ct mark, numgen map, dynamic set, fib, masquerade"
else
	fail nftables "$(tr '\n' ' ' </tmp/nft.err)"
fi

# --- the tests ---------------------------------------------------------------------------------
set -- /opt/eql/eqlplus_dialer-*
if [ $# -ne 1 ] || [ ! -x "$1" ]; then
	fail unit-tests "expected one test binary /opt/eql/eqlplus_dialer-*, found: $*"
	exit 1
fi
bin=$1
log=/tmp/kernel_ppp-tests.log
echo "KPPP-INFO running $bin net::kernel_ppp --test-threads=1 --nocapture"
EQLPLUS_REQUIRE_KERNEL_PPP=1 RUST_BACKTRACE=1 "$bin" net::kernel_ppp --test-threads=1 --nocapture >"$log" 2>&1
rc=$?
cat "$log"
summary=$(grep 'test result:' "$log" | tail -n 1)
if [ "$rc" -eq 0 ] && [ -n "$summary" ]; then
	pass unit-tests "net::kernel_ppp: $summary"
else
	fail unit-tests "net::kernel_ppp: exit $rc: ${summary:-no summary}"
fi
for t in $REAL_TESTS; do
	line=$(grep -o "kernel_ppp real kernel: $t: .*" "$log" | head -n 1)
	if [ -n "$line" ]; then
		pass "real:$t" "${line#kernel_ppp real kernel: "$t": }"
	else
		fail "real:$t" "its real-kernel part did not run (or the test is gone)"
	fi
done
left=$(ip -o link show | grep -o ' ppp[0-9]*:' | tr -d ' :' | tr '\n' ' ')
if [ -z "$left" ]; then pass no-leftovers "no pppN interface left"; else fail no-leftovers "left behind: $left"; fi

[ "$failures" -eq 0 ]
