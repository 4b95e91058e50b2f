#!/bin/sh
# The daemon with slave_kind = "ppp" in the kppp guest (tests/vm/kppp-guest.sh; run by
# tests/vm/kppp-check.sh): its line dials a simulated modem on a pty whose calls our PPP answer
# role takes (`simulate modem --isp routed`, in a network namespace `isp` of its own, the
# caller's packets on isp0 = 10.64.1.1, a busybox httpd there). Checks:
#   kernel-ppp-up     the line is up on kernel PPP: status says so, its slave is a PPP device
#   negotiated        the kernel was given what LCP agreed (the daemon's log), MTU 1500
#   transfer-1m       1 MiB over HTTP through the line, byte-exact
#   echo-under-load   LCP echoes answered while it ran (status' echo round trip)
#   queue-depth       what waits in the slave's qdisc shows as the line's queued bytes
#   hangup-cleans     `hangup`: the PPP device is gone; `up`: the line dials again over the
#                     same pty (its line discipline is back: chat reads the modem again)
#   sigkill-restart   SIGKILL of the daemon leaves no PPP device; a new daemon comes up again
#   bundle-fallback   a line of a bundle on kernel PPP whose ISP refuses Multilink: a plain
#                     line on a unit of its own
# Then two modems whose calls one Multilink ISP bundles (`simulate modems --routed`, 256 kbit/s
# each, namespace `mlisp`), a bundle with slave_kind = "ppp":
#   bundle-kernel-up    the bundle on ONE PPP device, both members on kernel PPP (channels)
#   bundle-transfer     1 MiB byte-exact, faster than one line (both carry it)
#   bundle-member-cut   a member hung up: the bundle stays up on the same device and carries
#                       on; the member rejoins
#   bundle-down-cleans  both hung up: the device gone; both dial again, the bundle is back
# Each prints KPPP-RESULT PASS|FAIL NAME DETAIL; the exit status is 1 if any failed.
# With KPPP_BENCH=N it measures instead (bench/kernel-ppp.sh, below); KPPP_PACED=KBIT paces
# the far end's downstream to KBIT kbit/s and also measures the daemon on an idle line.
set -u
EQ=eqlplus-dialer
W=/tmp/kd
SOCK=$W/control.sock
mkdir -p "$W/www"
fail=0
result() {
	echo "KPPP-RESULT $1 $2 ${3:-}"
	[ "$1" = PASS ] || fail=1
}
status_json() { timeout 10 "$EQ" status --socket "$SOCK" --json 2>/dev/null; }
# Waits up to $2 seconds for status --json to match the extended regex $1.
wait_status() {
	i=0
	while [ "$i" -lt "$2" ]; do
		status_json | grep -Eq "$1" && return 0
		sleep 1
		i=$((i + 1))
	done
	return 1
}
ppp_devices() { for d in /sys/class/net/*; do [ "$(cat "$d/type" 2>/dev/null)" = 512 ] && basename "$d"; done; }
start_daemon() {
	"$EQ" daemon --config "$W/eqlplus-dialer.toml" >>"$W/daemon.out" 2>&1 &
	DAEMON=$!
}
show_logs() {
	echo "--- the daemon's threads: state, CPU ticks, where they wait"
	for t in /proc/"${DAEMON:-0}"/task/*; do
		[ -d "$t" ] || continue
		echo "$(cat "$t/comm") $(cut -d' ' -f3,14,15 "$t/stat") wchan=$(cat "$t/wchan" 2>/dev/null)"
		head -n 8 "$t/stack" 2>/dev/null | sed 's/^/    /'
	done
	echo "--- daemon's output, then its log (last 40 lines)"
	tail -n "${KPPP_LOG_LINES:-20}" "$W/daemon.out" 2>/dev/null
	tail -n 40 "$W/daemon.log" 2>/dev/null
	echo "--- simulator"
	tail -n 10 "$W/sim.log"
	echo "---"
}

ip netns add isp
ip netns exec isp ip link set lo up
dd if=/dev/urandom of="$W/www/1m.bin" bs=1024 count=1024 2>/dev/null
ip netns exec isp "$EQ" simulate modem --isp routed --link "$W/ttySIM" >"$W/sim.log" 2>&1 &
SIM=$!
ip netns exec isp busybox httpd -p 80 -h "$W/www"
printf '%s\n' "ABORT BUSY ABORT 'NO CARRIER' TIMEOUT 5 '' ATZ OK ATDT\\T CONNECT ''" >"$W/dial.chat"
# The daemon's configuration: the common part, then the lines (and bundles) from stdin.
write_config() {
	{
		cat <<EOF
[control]
socket = "$SOCK"
[daemon]
lock_dir = "$W"
resolv_conf = "$W/resolv.conf"
log_file = "$W/daemon.log"
log_level = "info"
[track]
enabled = false
EOF
		cat
	} >"$W/eqlplus-dialer.toml"
}
# A line dialling PHONE on the modem at DEVICE.
line_toml() {
	printf '[[line]]\ndevice = "%s"\ndial_chat = "dial.chat"\nphone = "%s"\ncellular = false\n' "$1" "$2"
}
{
	line_toml "$W/ttySIM" 5551234
	printf 'slave_kind = "ppp"\nlcp_echo_interval = 1\n'
} | write_config
sleep 1

# KPPP_BENCH=N (bench/kernel-ppp.sh): instead of the checks, N MiB over kernel PPP and then
# over TUN on the same unpaced line, each as throughput and CPU time (the daemon's and the
# simulated modem + ISP's, from /proc/PID/stat) per GB.
if [ -n "${KPPP_BENCH:-}" ]; then
	dd if=/dev/urandom of="$W/www/big.bin" bs=1048576 count="$KPPP_BENCH" 2>/dev/null
	cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
	# The simulator itself (`ip netns exec` may run it as its child).
	for d in /proc/[0-9]*; do
		[ "$(cat "$d/comm" 2>/dev/null)" = eqlplus-dialer ] &&
			tr '\0' ' ' <"$d/cmdline" | grep -q "simulate modem" && SIMCPU=${d#/proc/}
	done
	hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
	for kind in ppp tun; do
		sed -i "s/^slave_kind = .*/slave_kind = \"$kind\"/" "$W/eqlplus-dialer.toml"
		start_daemon
		if ! wait_status '"state":"up"' 60; then
			result FAIL "bench-$kind" "not up: $(status_json)"
			show_logs
			continue
		fi
		idle=""
		if [ -n "${KPPP_PACED:-}" ]; then
			# The far end's downstream at a modem's pace (isp0 exists once the call is up),
			# and the daemon's CPU over 20 s of an idle line first.
			ip netns exec isp /sbin/tc qdisc replace dev isp0 root tbf rate "${KPPP_PACED}kbit" burst 1600 limit 30000
			i0=$(cpu "$DAEMON")
			sleep 20
			i1=$(cpu "$DAEMON")
			idle=$(awk -v d=$((i1 - i0)) -v hz="$hz" 'BEGIN { printf "; daemon CPU idle %.2f s per minute", d / hz * 3 }')
		fi
		d0=$(cpu "$DAEMON")
		s0=$(cpu "${SIMCPU:-$SIM}")
		t0=$(cut -d' ' -f1 /proc/uptime)
		printf 'GET /big.bin HTTP/1.0\r\n\r\n' | nc -w 120 10.64.1.1 80 >"$W/response"
		t1=$(cut -d' ' -f1 /proc/uptime)
		d1=$(cpu "$DAEMON")
		s1=$(cpu "${SIMCPU:-$SIM}")
		tail -c $((KPPP_BENCH * 1048576)) "$W/response" >"$W/got"
		if cmp -s "$W/got" "$W/www/big.bin"; then
			result PASS "bench-$kind" "$(awk -v n="$KPPP_BENCH" -v t0="$t0" -v t1="$t1" \
				-v d=$((d1 - d0)) -v s=$((s1 - s0)) -v hz="$hz" 'BEGIN {
				secs = t1 - t0; gb = n / 1024
				printf "%d MiB in %.1f s = %.0f KiB/s; daemon CPU %.2f s = %.0f s/GB = %.2f s per minute; modem+ISP CPU %.2f s", n, secs, n * 1024 / secs, d / hz, d / hz / gb, d / hz / secs * 60, s / hz }')$idle"
		else
			result FAIL "bench-$kind" "$(wc -c <"$W/response") bytes, not the file"
		fi
		kill "$DAEMON"
		wait "$DAEMON" 2>/dev/null
		sleep 2
	done
	kill "$SIM" 2>/dev/null
	exit "$fail"
fi

start_daemon

# --- kernel-ppp-up
if wait_status '"state":"up"' 60; then
	kind=$(status_json | grep -o '"slave_kind":"[^"]*"')
	type=$(cat /sys/class/net/eq-ttySIM/type 2>/dev/null)
	if [ "$kind" = '"slave_kind":"kernel PPP"' ] && [ "$type" = 512 ]; then
		result PASS kernel-ppp-up "$kind, eq-ttySIM is a PPP device (type $type)"
	else
		result FAIL kernel-ppp-up "$kind, eq-ttySIM type '$type'"
		show_logs
	fi
else
	result FAIL kernel-ppp-up "not up within 60 s: $(status_json)"
	show_logs
fi

# --- negotiated (the daemon logs to stderr: it was not detached)
mtu=$(cat /sys/class/net/eq-ttySIM/mtu 2>/dev/null)
agreed=$(grep "the channel frames as LCP agreed" "$W/daemon.out" | tail -n 1)
if [ -n "$agreed" ] && [ "$mtu" = 1500 ]; then
	result PASS negotiated "MTU $mtu; ${agreed#*kernel PPP: }"
else
	result FAIL negotiated "MTU '$mtu', LCP's values given to the kernel: '$agreed'"
fi

# --- transfer-1m (busybox nc: the static busybox's wget needs NSS for any address)
rm -f "$W/got" "$W/response"
t0=$(cut -d' ' -f1 /proc/uptime)
printf 'GET /1m.bin HTTP/1.0\r\n\r\n' | nc -w 120 10.64.1.1 80 >"$W/response"
t1=$(cut -d' ' -f1 /proc/uptime)
tail -c 1048576 "$W/response" >"$W/got"
if grep -q "200 OK" "$W/response" && cmp -s "$W/got" "$W/www/1m.bin"; then
	result PASS transfer-1m "1 MiB byte-exact in $(awk "BEGIN { print $t1 - $t0 }") s"
else
	result FAIL transfer-1m "$(wc -c <"$W/response") bytes: $(head -c 200 "$W/response")"
	show_logs
fi

# --- echo-under-load
rtt=$(status_json | grep -o '"lcp_rtt_ms":[0-9.]*')
if [ -n "$rtt" ]; then
	result PASS echo-under-load "$rtt"
else
	result FAIL echo-under-load "no LCP echo round trip: $(status_json)"
fi

# --- queue-depth: what waits in the slave's queueing discipline is the line's queue (status,
# the balancer's least-loaded policy). A slow tbf on the slave stands for a busy serial line;
# an upload fills it, and it drains again.
/sbin/tc qdisc replace dev eq-ttySIM root tbf rate 256kbit burst 1600 limit 60000
ip netns exec isp nc -l -p 9 >/dev/null 2>&1 &
SINK=$!
sleep 1
dd if=/dev/zero bs=1024 count=200 2>/dev/null | nc -w 30 10.64.1.1 9 &
UPLOAD=$!
queued() { status_json | grep -o '"queued_bytes":[0-9]*' | head -n 1 | cut -d: -f2; }
most=0
i=0
while [ "$i" -lt 25 ]; do
	q=$(queued)
	[ "${q:-0}" -gt "$most" ] && most=$q
	sleep 0.2
	i=$((i + 1))
done
wait "$UPLOAD" 2>/dev/null
i=0
while [ "$(queued)" != 0 ] && [ "$i" -lt 10 ]; do
	sleep 1
	i=$((i + 1))
done
after=$(queued)
/sbin/tc qdisc del dev eq-ttySIM root 2>/dev/null
kill "$SINK" 2>/dev/null
if [ "$most" -gt 0 ] && [ "$after" = 0 ]; then
	result PASS queue-depth "up to $most bytes queued during a 200 KiB upload at 256 kbit/s, then $after"
else
	result FAIL queue-depth "most queued $most, after the upload '$after'"
fi

# --- hangup-cleans
"$EQ" hangup ttySIM --socket "$SOCK" >/dev/null 2>&1
if wait_status '"state":"down"' 30; then
	left=$(ppp_devices)
	if [ -z "$left" ]; then
		"$EQ" up --socket "$SOCK" >/dev/null 2>&1
		if wait_status '"state":"up"' 60 && [ "$(cat /sys/class/net/eq-ttySIM/type 2>/dev/null)" = 512 ]; then
			result PASS hangup-cleans "no PPP device after hangup; up dialled again over the same pty"
		else
			result FAIL hangup-cleans "not up again after hangup: $(status_json)"
			show_logs
		fi
	else
		result FAIL hangup-cleans "PPP devices left after hangup: $left"
	fi
else
	result FAIL hangup-cleans "not down within 30 s: $(status_json)"
fi

# --- sigkill-restart
kill -9 "$DAEMON" 2>/dev/null
wait "$DAEMON" 2>/dev/null
sleep 1
left=$(ppp_devices)
if [ -n "$left" ]; then
	result FAIL sigkill-restart "PPP devices left after SIGKILL: $left"
else
	start_daemon
	if wait_status '"state":"up"' 60 && [ "$(cat /sys/class/net/eq-ttySIM/type 2>/dev/null)" = 512 ]; then
		result PASS sigkill-restart "nothing left after SIGKILL; a new daemon came up on kernel PPP"
	else
		result FAIL sigkill-restart "no line up after the restart: $(status_json)"
		show_logs
	fi
fi

stop_daemon() {
	kill "$DAEMON" 2>/dev/null
	i=0
	while kill -0 "$DAEMON" 2>/dev/null && [ "$i" -lt 20 ]; do
		sleep 1
		i=$((i + 1))
	done
}
stop_daemon

# --- bundle-fallback: a line of a bundle on kernel PPP whose ISP (this one) refuses Multilink
# is a plain line with a unit of its own.
{
	line_toml "$W/ttySIM" 5551234
	printf 'bundle = "solo"\n[[bundle]]\nname = "solo"\nslave_kind = "ppp"\n'
} | write_config
start_daemon
if wait_status '"name":"ttySIM"[^}]*"state":"up"' 60 && [ "$(cat /sys/class/net/eq-ttySIM/type 2>/dev/null)" = 512 ]; then
	printf 'GET /1m.bin HTTP/1.0\r\n\r\n' | nc -w 120 10.64.1.1 80 >"$W/response"
	tail -c 1048576 "$W/response" >"$W/got"
	if cmp -s "$W/got" "$W/www/1m.bin"; then
		result PASS bundle-fallback "no Multilink from the ISP: a plain line on its own unit (eq-ttySIM, type 512), 1 MiB byte-exact"
	else
		result FAIL bundle-fallback "$(wc -c <"$W/response") bytes, not the file"
	fi
else
	result FAIL bundle-fallback "not up on its own PPP device: $(status_json); devices: $(ppp_devices)"
	show_logs
fi
stop_daemon
kill "$SIM" 2>/dev/null

# --- The Multilink ISP: two modems (256 kbit/s each) whose calls one ISP bundles, routed in a
# namespace `mlisp` (the bundle's isp-mp = 10.64.1.1, a busybox httpd there once it is up).
ip netns add mlisp
ip netns exec mlisp ip link set lo up
ip netns exec mlisp "$EQ" simulate modems --count 2 --routed --link "$W/ttyML" --rate 256kbit --dial-delay 100 >"$W/sim.log" 2>&1 &
SIM=$!
sleep 1
{
	for i in 1 2; do
		line_toml "$W/ttyML$i" "555100$i"
		printf 'bundle = "isp"\nlcp_echo_interval = 1\n'
	done
	printf '[[bundle]]\nname = "isp"\nslave_kind = "ppp"\n'
} | write_config
start_daemon
bundle_json() { status_json | grep -o '"name":"isp"[^}]*'; }
members() { bundle_json | grep -o '"members":\[[^]]*\]'; }
both='"members":\["ttyML1","ttyML2"\]|"members":\["ttyML2","ttyML1"\]'

# --- bundle-kernel-up: the bundle up on ONE PPP device (eq-isp); both members on kernel PPP,
# without units of their own.
if wait_status '"name":"isp"[^}]*"state":"up"' 60 && wait_status "$both" 30; then
	ip netns exec mlisp busybox httpd -p 80 -h "$W/www"
	devices=$(ppp_devices | tr '\n' ' ')
	kinds=$(status_json | grep -o '"slave_kind":"[^"]*"' | sort | uniq -c | tr -s ' \n' ' ')
	if [ "$devices" = "eq-isp " ] && [ "$(status_json | grep -o '"slave_kind":"kernel PPP"' | wc -l)" = 3 ]; then
		result PASS bundle-kernel-up "one PPP device ($devices), $(members); slave kinds:$kinds"
	else
		result FAIL bundle-kernel-up "PPP devices '$devices'; slave kinds:$kinds"
		show_logs
	fi
else
	result FAIL bundle-kernel-up "no bundle of two within 90 s: $(status_json)"
	show_logs
fi

# --- bundle-transfer: 1 MiB byte-exact, faster than one line could (one line of 256 kbit/s
# carries ~245 kbit/s; above 290 means both carried it). Lines of 256, not 512: at 2 x 512
# the guest's CPU (TCG, one vCPU, the simulator inside) set the pace on a slow host (560
# kbit/s in one run, 755-856 in others), not the lines.
t0=$(cut -d' ' -f1 /proc/uptime)
printf 'GET /1m.bin HTTP/1.0\r\n\r\n' | nc -w 120 10.64.1.1 80 >"$W/response"
t1=$(cut -d' ' -f1 /proc/uptime)
tail -c 1048576 "$W/response" >"$W/got"
kbit=$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", 8 * 1048576 / (t1 - t0) / 1000 }')
if cmp -s "$W/got" "$W/www/1m.bin" && [ "$kbit" -gt 290 ]; then
	result PASS bundle-transfer "1 MiB byte-exact at $kbit kbit/s over two lines of 256 kbit/s"
else
	result FAIL bundle-transfer "$(wc -c <"$W/response") bytes at $kbit kbit/s"
	show_logs
fi

# --- bundle-member-cut: one member hung up: the bundle (its device, its addresses) stays up
# and carries on; the member dials again and rejoins.
index=$(cat /sys/class/net/eq-isp/ifindex 2>/dev/null)
"$EQ" hangup ttyML1 --socket "$SOCK" >/dev/null 2>&1
if wait_status '"members":\["ttyML2"\]' 20; then
	printf 'GET /1m.bin HTTP/1.0\r\n\r\n' | nc -w 120 10.64.1.1 80 >"$W/response"
	tail -c 1048576 "$W/response" >"$W/got"
	now=$(cat /sys/class/net/eq-isp/ifindex 2>/dev/null)
	state=$(bundle_json | grep -o '"state":"[a-z-]*"')
	if cmp -s "$W/got" "$W/www/1m.bin" && [ "$state" = '"state":"up"' ] && [ "$now" = "$index" ]; then
		timeout 90 "$EQ" up ttyML1 --socket "$SOCK" >/dev/null 2>&1
		if wait_status "$both" 60; then
			result PASS bundle-member-cut "one member hung up: the bundle stayed $state on eq-isp (index $now), 1 MiB byte-exact over the other; it rejoined: $(members)"
		else
			result FAIL bundle-member-cut "the member did not rejoin: $(status_json)"
			show_logs
		fi
	else
		result FAIL bundle-member-cut "bundle $state, eq-isp index '$now' (was $index); $(wc -c <"$W/response") bytes"
		show_logs
	fi
else
	result FAIL bundle-member-cut "still $(members) after the hangup"
	show_logs
fi

# --- bundle-down-cleans: both members hung up: the bundle down, its device gone; `up` dials
# both again over the same ptys (their line disciplines back) and the bundle comes back.
"$EQ" hangup ttyML1 --socket "$SOCK" >/dev/null 2>&1
"$EQ" hangup ttyML2 --socket "$SOCK" >/dev/null 2>&1
if wait_status '"name":"isp"[^}]*"state":"down"' 30; then
	sleep 1
	left=$(ppp_devices)
	timeout 90 "$EQ" up --socket "$SOCK" >/dev/null 2>&1
	if [ -z "$left" ] && wait_status '"name":"isp"[^}]*"state":"up"' 60 && wait_status "$both" 30; then
		result PASS bundle-down-cleans "no PPP device with both members down; both dialled again and the bundle is back: $(members)"
	else
		result FAIL bundle-down-cleans "devices left '$left'; then $(status_json)"
		show_logs
	fi
else
	result FAIL bundle-down-cleans "the bundle not down: $(status_json)"
	show_logs
fi
stop_daemon
kill "$SIM" 2>/dev/null
left=$(ppp_devices)
[ -z "$left" ] || result FAIL bundle-stop-cleans "PPP devices left after the daemon stopped: $left"
exit "$fail"
