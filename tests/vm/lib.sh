# lib.sh: pieces shared by the QEMU guest tests (systemd-guest.sh, kppp-guest.sh); sourced.
# shellcheck shell=bash
#
# The caller sets VM_NAME (how it names itself in messages, e.g. "systemd guest") and may set
# VM_SKIP_WORD (default "skipped").

# vm_skip MESSAGE: says the guest test was skipped and exits 0.
vm_skip() {
    echo "$VM_NAME: ${VM_SKIP_WORD:-skipped}: $*"
    exit 0
}

# vm_require_root WHY: as non-root, skip (exit 0), or fail where EQLPLUS_REQUIRE_ROOT=1.
vm_require_root() {
    [[ $EUID -eq 0 ]] && return 0
    if [[ ${EQLPLUS_REQUIRE_ROOT:-} = 1 ]]; then
        echo "$VM_NAME: needs root (EQLPLUS_REQUIRE_ROOT=1)" >&2
        exit 1
    fi
    vm_skip "needs root ($1)"
}

# vm_kvm_works KERNEL VERDICT_FILE: whether KVM really boots KERNEL here. /dev/kvm may exist and
# still not run a guest (some nested hosts refuse MSRs of -cpu host, or hang in the kernel's
# first steps): boot the kernel without a root file system and expect its panic within 20 s.
# The verdict is cached in VERDICT_FILE (the caller names it by host kernel, QEMU and guest
# kernel).
vm_kvm_works() {
    local kernel=$1 f=$2 log qpid i verdict=no
    [[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] || return 1
    if [[ -f $f ]]; then
        [[ $(cat "$f") = yes ]]
        return
    fi
    log=$(mktemp)
    qemu-system-x86_64 -accel kvm -M pc -cpu host -m 256 -nodefaults -no-user-config \
        -display none -vga none -no-reboot -kernel "$kernel" \
        -append "console=ttyS0 panic=-1 loglevel=4" -serial "file:$log" >/dev/null 2>&1 &
    qpid=$!
    for ((i = 0; i < 200; i++)); do
        kill -0 "$qpid" 2>/dev/null || break
        grep -q 'Kernel panic' "$log" && break
        sleep 0.1
    done
    grep -q 'Kernel panic' "$log" && verdict=yes
    kill -KILL "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
    rm -f "$log"
    echo "$verdict" >"$f"
    [[ $verdict = yes ]]
}

# vm_kvm_verdict_file DIR KEY: where vm_kvm_works keeps its verdict for this host kernel, this
# QEMU and the guest kernel that KEY stands for.
vm_kvm_verdict_file() {
    echo "$1/kvm-$(uname -r)-$(qemu-system-x86_64 --version | awk 'NR==1{print $4}')-$2"
}

# shellcheck disable=SC2034 # VM_ACCEL and VM_CPU are the caller's
# vm_accel ACCEL KERNEL VERDICT_FILE: resolves auto|kvm|tcg into VM_ACCEL (kvm only where it
# really boots KERNEL) and VM_CPU (host or max); exits 1 if kvm was asked for and does not
# work, 2 on a bad value.
vm_accel() {
    case $1 in
    auto) if vm_kvm_works "$2" "$3" 2>/dev/null; then VM_ACCEL=kvm; else VM_ACCEL=tcg; fi ;;
    kvm)
        vm_kvm_works "$2" "$3" 2>/dev/null || {
            echo "$VM_NAME: KVM requested but it does not boot a guest here" >&2
            exit 1
        }
        VM_ACCEL=kvm
        ;;
    tcg) VM_ACCEL=tcg ;;
    *)
        echo "$VM_NAME: --accel must be auto, kvm or tcg" >&2
        exit 2
        ;;
    esac
    if [[ $VM_ACCEL = kvm ]]; then VM_CPU=host; else VM_CPU=max; fi
}

# vm_qemu_starts ACCEL CPU PIDFILE: whether QEMU starts a guest at all with that accelerator
# (a machine may lack the firmware or refuse TCG's memory). Leaves nothing running.
vm_qemu_starts() {
    qemu-system-x86_64 -accel "$1" -M pc -cpu "$2" -m 64 -nodefaults -display none -S \
        -no-user-config -monitor none -serial none -parallel none -daemonize -pidfile "$3" \
        >/dev/null 2>&1 || return 1
    kill "$(cat "$3")" 2>/dev/null || true
    rm -f "$3"
}
