#!/usr/bin/env bash
# systemd-guest.sh: proves systemd/eqlplus-dialer.service under a real systemd, in a QEMU guest.
#
#   tests/vm/systemd-guest.sh [--rebuild] [--accel auto|kvm|tcg] [--keep]
#
# Boots Debian with systemd as PID 1 (tests/vm/build-guest.sh; built once, cached under
# target/vm/guest-<hash>), installs eqlplus-dialer into it with DESTDIR=… scripts/install.sh,
# replaces the configuration with one [[line]] on /dev/ttyS1 — an emulated 16550 UART wired to
# `eqlplus-dialer simulate modem --isp ppp` on the host (a Hayes modem whose calls our PPP
# engine answers: 10.64.1.1 ↔ 10.64.1.2) — and runs tests/vm/guest/eqlvm-check at boot:
# `systemctl enable --now` (Type=notify: active means READY=1), the line up under the sandbox,
# `systemctl reload`, the watchdog restarting a stopped daemon, an ICMP tracking probe,
# `systemctl stop` within TimeoutStopSec, `systemd-analyze security`. Prints PASS/FAIL per
# check and exits 1 if any failed.
#
#   --rebuild        build the guest again even if it is cached
#   --accel A        auto (default: KVM if it really boots a kernel, else TCG), kvm or tcg
#   --keep           keep the run's disk image (target/vm/run/disk.img; root logs in on the
#                    console without a password)
#
# Needs root (debootstrap, the image, /dev/kvm) and QEMU; as root it installs the Debian
# packages it needs. As non-root it says it was skipped (EQLPLUS_REQUIRE_ROOT=1: fails);
# where QEMU cannot start at all it says it was skipped and exits 0.
# Environment: EQLPLUS_VM_DIR (default target/vm), EQLPLUS_VM_SUITE, EQLPLUS_VM_MIRROR
# (see build-guest.sh).
# Output of the run (console, far end, results, captured logs): target/vm/run/.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$(pwd)

REBUILD=0
ACCEL=auto
KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --rebuild) REBUILD=1 ;;
    --accel) ACCEL=${2:?--accel needs a value}; shift ;;
    --keep) KEEP=1 ;;
    -h | --help)
        sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"
        exit 0
        ;;
    *) echo "systemd-guest: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "[systemd-guest] $*" >&2; }
VM_NAME="systemd guest"
. tests/vm/lib.sh

vm_require_root "debootstrap, disk image, QEMU"
[[ $(uname -m) = x86_64 ]] || vm_skip "the guest is x86_64 and this machine is $(uname -m)"

. scripts/packages.sh
ensure_packages qemu-system-x86 debootstrap e2fsprogs util-linux
command -v qemu-system-x86_64 >/dev/null || vm_skip "qemu-system-x86_64 is not installed and could not be"
command -v debootstrap >/dev/null || vm_skip "debootstrap is not installed and could not be"

VM=${EQLPLUS_VM_DIR:-$TOP/target/vm}
mkdir -p "$VM"

# --- the guest, cached by what it is built from ---------------------------------------------
. /etc/os-release 2>/dev/null || true
export EQLPLUS_VM_SUITE=${EQLPLUS_VM_SUITE:-${VERSION_CODENAME:-bookworm}}
export EQLPLUS_VM_MIRROR=${EQLPLUS_VM_MIRROR:-http://deb.debian.org/debian}
key=$({
    cat tests/vm/build-guest.sh
    echo "$EQLPLUS_VM_SUITE $EQLPLUS_VM_MIRROR"
} | sha256sum | cut -c1-16)
GUEST=$VM/guest-$key
if [[ $REBUILD = 1 || ! -f $GUEST/manifest ]]; then
    # Older builds of other inputs go: each is several hundred MB.
    find "$VM" -maxdepth 1 -name 'guest-*' ! -name "guest-$key" -exec rm -rf {} +
    t=$(date +%s)
    say "building the guest into $GUEST"
    tests/vm/build-guest.sh "$GUEST"
    say "guest built in $(($(date +%s) - t)) s"
fi

# --- accelerator: KVM only where it really boots a kernel ------------------------------------
# (tests/vm/lib.sh: the guest kernel booted without a root file system must panic within 20 s;
# the verdict is cached per host kernel, QEMU and guest kernel.)
vm_accel "$ACCEL" "$GUEST/vmlinuz" "$(vm_kvm_verdict_file "$VM" "$key")"
ACCEL=$VM_ACCEL CPU=$VM_CPU
if [[ $ACCEL = kvm ]]; then SLOW=1 DEADLINE=600; else SLOW=3 DEADLINE=1500; fi
# QEMU must at least start (a machine may lack the firmware or refuse TCG's memory).
vm_qemu_starts "$ACCEL" "$CPU" "$VM/probe.pid" || vm_skip "QEMU cannot start a $ACCEL guest here"

# --- this run: the guest's root plus our installation ---------------------------------------
RUN=$VM/run
rm -rf "$RUN"
mkdir -p "$RUN"
T0=$(date +%s)
cp -a --reflink=auto "$GUEST/root" "$RUN/root"
G=$RUN/root
say "installing into the guest: DESTDIR=$G scripts/install.sh"
DESTDIR=$G ./scripts/install.sh >"$RUN/install.log"
# One line on the emulated UART. Tracking off (the far end routes nothing); the checks turn
# it on for one step to see the ICMP probe socket under the sandbox.
cat >"$G/etc/eqlplus-dialer/eqlplus-dialer.toml" <<'EOF'
# eqlplus-dialer in the systemd guest of tests/vm/systemd-guest.sh
[track]
enabled = false

[[line]]
name = "ttyS1"
device = "/dev/ttyS1"
baud = 115200
dial_chat = "chat/hayes-dialup.chat"
phone = "5551234"
holdoff = 1
EOF
target/release/eqlplus-dialer check-config --config "$G/etc/eqlplus-dialer/eqlplus-dialer.toml" \
    >"$RUN/check-config.log" 2>&1 || { cat "$RUN/check-config.log" >&2; exit 1; }
install -m 755 tests/vm/guest/eqlvm-check "$G/usr/local/sbin/eqlvm-check"
install -m 644 tests/vm/guest/eqlvm-check.service "$G/etc/systemd/system/"
ln -sf /etc/systemd/system/eqlvm-check.service "$G/etc/systemd/system/multi-user.target.wants/"
size=$(($(du -sm "$G" | cut -f1) + 512))
truncate -s "${size}M" "$RUN/disk.img"
mkfs.ext4 -q -F -L eqlvm -d "$G" "$RUN/disk.img"
rm -rf "$G"
say "disk image ready in $(($(date +%s) - T0)) s (${size} MiB)"

# --- the far end: a simulated modem on a pty, answered by our PPP engine ----------------------
QPID="" SPID=""
cleanup() {
    if [[ -n $QPID ]]; then
        kill -KILL "$QPID" 2>/dev/null || true
        wait "$QPID" 2>/dev/null || true
    fi
    # The simulated modem ends on SIGINT (Ctrl-C); given 3 s.
    if [[ -n $SPID ]]; then
        kill -INT "$SPID" 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do
            kill -0 "$SPID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
    [[ $KEEP = 1 ]] || rm -f "$RUN/disk.img"
}
trap cleanup EXIT
# In a network namespace of its own: --isp ppp touches no network, but nothing here should
# be able to touch the machine's.
unshare --net target/release/eqlplus-dialer simulate modem --isp ppp --link "$RUN/modem" \
    >"$RUN/farend.log" 2>&1 &
SPID=$!
for ((i = 0; i < 100; i++)); do
    [[ -e $RUN/modem ]] && break
    kill -0 "$SPID" 2>/dev/null || { cat "$RUN/farend.log" >&2; exit 1; }
    sleep 0.1
done
PTY=$(readlink -f "$RUN/modem")
[[ -c $PTY ]] || { say "the simulated modem did not come up"; cat "$RUN/farend.log" >&2; exit 1; }

# --- boot -------------------------------------------------------------------------------------
# ttyS0: the console (a file); ttyS1: the line, QEMU's tty back end on the simulated modem's
# pty (the guest sees no DCD there, and its DTR does not reach the modem: the far end learns of
# a hangup from PPP's Terminate-Request); ttyS2: the checks' results (a file).
APPEND="root=/dev/vda rw console=ttyS0 panic=-1 eqlvm.slow=$SLOW"
: >"$RUN/results.log"
qemu-system-x86_64 -name eqlvm -M pc -accel "$ACCEL" -cpu "$CPU" -smp 2 -m 1024 \
    -nodefaults -no-user-config -display none -vga none -no-reboot \
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.img" -append "$APPEND" \
    -drive "file=$RUN/disk.img,if=virtio,format=raw,cache=unsafe" \
    -chardev "file,id=console,path=$RUN/console.log" -device isa-serial,index=0,chardev=console \
    -chardev "serial,id=line,path=$PTY" -device isa-serial,index=1,chardev=line \
    -chardev "file,id=results,path=$RUN/results.log" -device isa-serial,index=2,chardev=results \
    >"$RUN/qemu.log" 2>&1 &
QPID=$!
say "guest booting ($ACCEL, far end on $PTY); console: $RUN/console.log"

# Follow the results as they come; LOG lines go to files of their own.
declare -A VERDICT=()
ORDER=()
seen=0
done_=""
end=$(($(date +%s) + DEADLINE))
follow() {
    local n line rest name verdict
    n=$(wc -l <"$RUN/results.log")
    while ((seen < n)); do
        seen=$((seen + 1))
        line=$(sed -n "${seen}p" "$RUN/results.log" | tr -d '\r')
        case $line in
        "EQLVM RESULT "*)
            rest=${line#EQLVM RESULT }
            name=${rest%% *}
            rest=${rest#* }
            verdict=${rest%% *}
            VERDICT[$name]=$verdict
            ORDER+=("$name")
            printf '%-4s %-16s %s\n' "$verdict" "$name" "${rest#* }"
            ;;
        "EQLVM LOG "*)
            rest=${line#EQLVM LOG }
            printf '%s\n' "${rest#* }" >>"$RUN/${rest%% *}.txt"
            ;;
        "EQLVM INFO STOP-BEGIN") STOP_FAREND=$(grep -c 'PPP ended' "$RUN/farend.log" || true) ;;
        "EQLVM INFO "*) say "guest: ${line#EQLVM INFO }" ;;
        "EQLVM DONE "*) done_=${line#EQLVM DONE } ;;
        esac
    done
}
STOP_FAREND=""
while [[ -z $done_ ]]; do
    follow
    [[ -n $done_ ]] && break
    if ! kill -0 "$QPID" 2>/dev/null; then
        follow
        [[ -n $done_ ]] && break
        say "QEMU exited before the checks finished; last console lines:"
        tail -n 20 "$RUN/console.log" >&2
        cat "$RUN/qemu.log" >&2
        break
    fi
    if (($(date +%s) >= end)); then
        say "no result after ${DEADLINE}s; last console lines:"
        tail -n 20 "$RUN/console.log" >&2
        break
    fi
    sleep 0.2
done
# The guest powers off after the checks.
for ((i = 0; i < 60 * SLOW; i++)); do
    kill -0 "$QPID" 2>/dev/null || break
    sleep 1
done
kill -0 "$QPID" 2>/dev/null && say "the guest did not power off; killing QEMU"
kill -KILL "$QPID" 2>/dev/null || true
wait "$QPID" 2>/dev/null || true
QPID=""
TOTAL=$(($(date +%s) - T0))

# The far end's view of the stop: the last PPP session ended by our Terminate-Request.
if [[ ${VERDICT[stop]:-} ]]; then
    last=$(grep 'PPP ended' "$RUN/farend.log" | tail -n 1)
    after=$(grep -c 'PPP ended' "$RUN/farend.log" || true)
    if [[ -n $STOP_FAREND ]] && ((after > STOP_FAREND)) && [[ $last = *"peer closed the link"* ]]; then
        VERDICT[farend-hangup]=PASS
        msg="the far end: '$last'"
    else
        VERDICT[farend-hangup]=FAIL
        msg="the far end saw no Terminate-Request after the stop began (last: '${last:-nothing}')"
    fi
    ORDER+=(farend-hangup)
    printf '%-4s %-16s %s\n' "${VERDICT[farend-hangup]}" farend-hangup "$msg"
fi

failed=0
for name in "${ORDER[@]}"; do
    [[ ${VERDICT[$name]} = FAIL ]] && failed=$((failed + 1))
done
if [[ -z $done_ ]]; then
    echo "FAIL systemd guest: the checks did not finish (${#ORDER[@]} reported)"
    failed=$((failed + 1))
fi
echo "systemd guest ($ACCEL): ${#ORDER[@]} checks, $failed failed, ${TOTAL}s (logs: $RUN)"
((failed == 0))
