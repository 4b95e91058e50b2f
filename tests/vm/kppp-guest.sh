#!/usr/bin/env bash
# kppp-guest.sh: runs a script as root in a small QEMU guest whose kernel has PPP (/dev/ppp,
# the N_PPP line discipline), TUN and nftables: what this project's kernel-PPP code needs and
# a kernel without CONFIG_PPP cannot test.
#
#   tests/vm/kppp-guest.sh [--script PATH] [--bin PATH]... [--env NAME=VALUE]...
#                          [--timeout S] [--accel auto|kvm|tcg] [--smp N] [--quiet]
#                          [--rebuild] [--build-only]
#
# The guest is Debian's distribution kernel (the package linux-image-amd64 depends on, fetched
# with `apt-get download`) and an initramfs that is its whole root: busybox (busybox-static),
# iproute2's `ip` and `tc`, `nft` with their libraries (from this machine), libgcc_s and libm (for
# Rust binaries), the modules ppp_generic, ppp_async, slhc, crc-ccitt, tun, dummy, veth,
# nf_tables, nft_ct, nft_numgen, nft_chain_nat, nft_masq, nft_fib_*, nft_hash,
# nf_conntrack_netlink (loaded at boot) and all of netfilter (loaded on demand). It is built
# once and cached under target/vm/kppp-<hash of this file> (a few seconds, plus the download).
#
# Each run adds to it /init (tests/vm/kppp/init), the files given with --bin (in /opt/eql/ of
# the guest, debug info stripped; their shared libraries are added as `ldd` lists them), the
# --env settings and the --script, which the guest runs with busybox sh after loading the
# modules, its output on the serial console. The script reports with lines
#   KPPP-RESULT PASS|FAIL NAME [DETAIL]
# and its exit status; the guest then prints KPPP-DONE rc=N and powers off. This script
# streams the console (unless --quiet; always saved to target/vm/kppp-run/console.log), lists
# the results and exits with N (1 if N is 0 but a result is FAIL, 124 if the guest did not
# finish within --timeout, 1 if it died without saying).
#
#   --script PATH    the guest's payload (default: none, the guest boots, reports, powers off)
#   --bin PATH       a file to copy to /opt/eql/ (repeatable; /opt/eql is first in PATH)
#   --env NAME=VALUE exported to the script (repeatable)
#   --timeout S      QEMU's whole run, boot included, is killed after S seconds (default 900)
#   --accel A        auto (default: KVM if it really boots a kernel, else TCG), kvm or tcg
#   --smp N          vCPUs (default 1); RAM is 1 GiB
#   --quiet          do not stream the console, only the results
#   --rebuild        build the guest again even if it is cached
#   --build-only     build (or find) the guest, boot nothing
#
# Needs root (modules and device nodes in the image, the packages) and QEMU; as root it
# installs the Debian packages it needs. As non-root it says SKIPPED and exits 0
# (EQLPLUS_REQUIRE_ROOT=1: fails); where QEMU cannot start at all it says SKIPPED, exits 0.
# Environment: EQLPLUS_VM_DIR (default target/vm), EQLPLUS_KPPP_KERNEL_PKG (another kernel
# package than linux-image-amd64's).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$(pwd)

SCRIPT=""
BINS=()
ENVS=()
TIMEOUT=900
ACCEL=auto
SMP=1
QUIET=0
REBUILD=0
BUILD_ONLY=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --script) SCRIPT=${2:?--script needs a path}; shift ;;
    --bin) BINS+=("${2:?--bin needs a path}"); shift ;;
    --env)
        [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "kppp guest: --env needs NAME=VALUE" >&2; exit 2; }
        ENVS+=("$2")
        shift
        ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
    --accel) ACCEL=${2:?--accel needs a value}; shift ;;
    --smp) SMP=${2:?--smp needs a number}; shift ;;
    --quiet) QUIET=1 ;;
    --rebuild) REBUILD=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    -h | --help)
        sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"
        exit 0
        ;;
    *) echo "kppp guest: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $TIMEOUT =~ ^[0-9]+$ && $TIMEOUT -gt 0 ]] || { echo "kppp guest: --timeout must be seconds" >&2; exit 2; }
[[ $SMP =~ ^[1-9][0-9]*$ ]] || { echo "kppp guest: --smp must be a number" >&2; exit 2; }
[[ -z $SCRIPT || -f $SCRIPT ]] || { echo "kppp guest: no script $SCRIPT" >&2; exit 2; }
for b in "${BINS[@]}"; do
    [[ -f $b ]] || { echo "kppp guest: no file $b" >&2; exit 2; }
done

say() { echo "[kppp-guest] $*" >&2; }
die() {
    echo "[kppp-guest] error: $*" >&2
    exit 1
}
VM_NAME="kppp guest"
VM_SKIP_WORD=SKIPPED
. tests/vm/lib.sh

vm_require_root "modules and device nodes in the guest image, QEMU"
[[ $(uname -m) = x86_64 ]] || vm_skip "the guest is x86_64 and this machine is $(uname -m)"

. scripts/packages.sh
# qemu-system-x86: QEMU. cpio, kmod (modinfo, depmod), iproute2 (ip) and nftables (nft): the
# guest's root is made of them. binutils: strip (optional: without it the binaries go as
# they are).
ensure_packages qemu-system-x86 cpio kmod iproute2 nftables binutils
command -v qemu-system-x86_64 >/dev/null || vm_skip "qemu-system-x86_64 is not installed and could not be"
for tool in cpio modinfo depmod ip tc nft dpkg-deb apt-get; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

VM=${EQLPLUS_VM_DIR:-$TOP/target/vm}
mkdir -p "$VM"
KEY=$({
    cat tests/vm/kppp-guest.sh
    echo "${EQLPLUS_KPPP_KERNEL_PKG:-}"
} | sha256sum | cut -c1-16)
GUEST=$VM/kppp-$KEY
# Downloaded packages, kept across builds (a new version is downloaded when apt has one).
DEBS=$VM/debs

# Modules loaded at boot, in this order after their dependencies: PPP (crc-ccitt and slhc come
# as ppp_async's and ppp_generic's dependencies, or are built in), TUN, dummy and veth links,
# tbf (a slow queue on a slave, for the queue-depth check),
# and what the balancer's nftables table uses (ct, numgen, nat + masquerade, fib, sets,
# conntrack over netlink). crc32c_generic first: libcrc32c (nf_tables, nf_conntrack) needs a
# crc32c, a soft dependency that modinfo's "depends" does not name. The rest of netfilter is
# in the image too, for modprobe.
BOOT_MODULES="slhc crc-ccitt ppp_generic ppp_async tun dummy veth sch_tbf crc32c_generic
nf_tables nf_conntrack nf_nat nft_ct nft_numgen nft_chain_nat nft_masq nft_fib_inet nft_fib_ipv4
nft_fib_ipv6 nft_hash nf_conntrack_netlink"
EXTRA_MODULE_DIRS="net/netfilter net/ipv4/netfilter net/ipv6/netfilter"

# --- the guest, built once ----------------------------------------------------------------
# apt_fetch PKG: the .deb of PKG's candidate version in $DEBS (downloaded if missing).
apt_fetch() {
    local pkg=$1 ver deb
    ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2; exit}')
    if [[ -z $ver || $ver = "(none)" ]]; then
        apt-get update -qq >&2
        ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2; exit}')
    fi
    [[ -n $ver && $ver != "(none)" ]] || die "apt knows no package $pkg"
    deb=$(find "$DEBS" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
    if [[ -n $deb ]] && [[ $(dpkg-deb -f "$deb" Version) != "$ver" ]]; then
        rm -f "$deb"
        deb=""
    fi
    if [[ -z $deb ]]; then
        say "apt-get download $pkg ($ver)"
        (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
            { apt-get update -qq >&2 && (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2); } ||
            die "apt-get download $pkg failed"
        deb=$(find "$DEBS" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
    fi
    [[ -n $deb ]] || die "no .deb of $pkg in $DEBS"
    echo "$deb"
}

# add_elf ROOT FILE DEST: FILE at DEST in ROOT, with every shared library ldd lists for it.
add_elf() {
    local root=$1 src=$2 dst=$3 lib
    install -D -m 755 "$src" "$root$dst"
    add_libs "$root" "$src"
}

# add_libs ROOT FILE: the shared libraries of FILE (and the dynamic loader) into ROOT.
add_libs() {
    local root=$1 lib
    ldd "$2" 2>/dev/null | awk '/=> \//{print $3} /^\t\/[^ ]*ld-linux/{print $1}' | while read -r lib; do
        [[ -e $root$lib ]] || install -D -m 755 "$(readlink -f "$lib")" "$root$lib"
    done
}

build_guest() {
    local out=$1 tmp kpkg kdeb bdeb kx kver moddir root m rel n d
    local t0
    t0=$(date +%s)
    mkdir -p "$DEBS"
    kpkg=${EQLPLUS_KPPP_KERNEL_PKG:-}
    if [[ -z $kpkg ]]; then
        kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
        if [[ -z $kpkg ]]; then
            apt-get update -qq >&2
            kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
        fi
    fi
    [[ -n $kpkg ]] || die "cannot resolve the kernel package behind linux-image-amd64"
    kdeb=$(apt_fetch "$kpkg")
    bdeb=$(apt_fetch busybox-static)

    rm -rf "$out"
    tmp=$out.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    kx=$tmp/kernel
    say "unpacking $(basename "$kdeb")"
    dpkg-deb -x "$kdeb" "$kx"
    dpkg-deb -x "$bdeb" "$tmp/busybox"
    kver=$(find "$kx/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)
    [[ -n $kver && -f $kx/boot/vmlinuz-$kver ]] || die "no kernel in $kdeb"
    moddir=$kx/lib/modules/$kver

    root=$tmp/root
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,lib,lib64,proc,sys,dev,tmp,run,root,opt/eql,var}
    ln -s ../run "$root/var/run"
    # busybox and its applets; iproute2's ip instead of busybox's.
    install -m 755 "$tmp/busybox/bin/busybox" "$root/bin/busybox"
    "$root/bin/busybox" --list-full | while read -r a; do
        case $a in bin/busybox | */ip | */tc) continue ;; esac
        [[ -e $root/$a ]] || ln -s /bin/busybox "$root/$a"
    done
    add_elf "$root" "$(readlink -f "$(command -v ip)")" /sbin/ip
    add_elf "$root" "$(readlink -f "$(command -v nft)")" /usr/sbin/nft
    # iproute2's tc (busybox's cannot make a tbf).
    add_elf "$root" "$(readlink -f "$(command -v tc)")" /sbin/tc
    # Rust binaries also need libgcc_s (unwinding) and often libm.
    for lib in /lib/x86_64-linux-gnu/libgcc_s.so.1 /lib/x86_64-linux-gnu/libm.so.6; do
        [[ -e $lib && ! -e $root$lib ]] && install -D -m 755 "$(readlink -f "$lib")" "$root$lib"
    done

    # Kernel modules: the boot list and the extra folders, with every dependency (modinfo);
    # the boot list's load order puts dependencies first.
    declare -A path=() seen=()
    while read -r f; do
        n=$(basename "$f" .ko)
        path[${n//-/_}]=$f
    done < <(find "$moddir/kernel" -name '*.ko')
    local order=()
    visit() {
        local m=${1//-/_} d
        [[ -n ${seen[$m]:-} ]] && return 0
        seen[$m]=1
        if [[ -z ${path[$m]:-} ]]; then
            grep -q "/${m}.ko\$\|/${m//_/-}.ko\$" "$moddir/modules.builtin" ||
                die "module $1 is neither in $kpkg nor built in"
            return 0
        fi
        for d in $(modinfo -F depends "${path[$m]}" | tr ',' ' '); do visit "$d"; done
        order+=("$m")
    }
    for m in $BOOT_MODULES; do visit "$m"; done
    local boot=("${order[@]}")
    for d in $EXTRA_MODULE_DIRS; do
        [[ -d $moddir/kernel/$d ]] || continue
        while read -r f; do visit "$(basename "$f" .ko)"; done < <(find "$moddir/kernel/$d" -name '*.ko')
    done
    for m in "${order[@]}"; do
        rel=${path[$m]#"$moddir/"}
        install -D -m 644 "${path[$m]}" "$root/lib/modules/$kver/$rel"
    done
    for m in "${boot[@]}"; do
        case $m in
        dummy) echo "${path[$m]#"$moddir/"} numdummies=0" ;; # no dummy0 unless a test makes it
        *) echo "${path[$m]#"$moddir/"}" ;;
        esac
    done >"$root/etc/modules.load"
    cp "$moddir"/modules.order "$moddir"/modules.builtin* "$root/lib/modules/$kver/" 2>/dev/null || true
    depmod -b "$root" "$kver" || die "depmod for the guest failed"

    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\ntty:x:5:\n' >"$root/etc/group"
    printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
    printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3

    install -m 644 "$kx/boot/vmlinuz-$kver" "$tmp/vmlinuz"
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$tmp/base.cpio.gz"
    {
        echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - t0)) s"
        echo "kernel: $kver ($(basename "$kdeb"))"
        echo "busybox: $(basename "$bdeb")"
        echo "iproute2 (host): $(dpkg-query -W -f='${Version}' iproute2)"
        echo "nftables (host): $(dpkg-query -W -f='${Version}' nftables)"
        echo "boot modules: ${boot[*]}"
        echo "modules in the image: ${#order[@]}"
        echo "vmlinuz: $(stat -c %s "$tmp/vmlinuz") bytes"
        echo "initramfs: $(stat -c %s "$tmp/base.cpio.gz") bytes ($(du -sk "$root" | cut -f1) KiB unpacked)"
    } >"$tmp/manifest"
    mkdir -p "$out"
    mv "$tmp/vmlinuz" "$tmp/base.cpio.gz" "$tmp/manifest" "$out/"
    rm -rf "$tmp"
    cat "$out/manifest" >&2
}

if [[ $REBUILD = 1 || ! -f $GUEST/manifest ]]; then
    # Guests built by other versions of this script go (kppp-run is a run's output).
    find "$VM" -maxdepth 1 -name 'kppp-*' ! -name "kppp-$KEY" ! -name kppp-run -exec rm -rf {} +
    t=$(date +%s)
    say "building the guest into $GUEST"
    build_guest "$GUEST"
    say "guest built in $(($(date +%s) - t)) s"
fi
if [[ $BUILD_ONLY = 1 ]]; then
    echo "kppp guest: built: $GUEST"
    exit 0
fi

# --- accelerator, and whether QEMU starts at all ------------------------------------------
vm_accel "$ACCEL" "$GUEST/vmlinuz" "$(vm_kvm_verdict_file "$VM" "kppp-$KEY")"
vm_qemu_starts "$VM_ACCEL" "$VM_CPU" "$VM/kppp-probe.pid" || vm_skip "QEMU cannot start a $VM_ACCEL guest here"

# --- this run: the base image plus an overlay with /init, the files and the script ---------
RUN=$VM/kppp-run
rm -rf "$RUN"
mkdir -p "$RUN/overlay/opt/eql"
T0=$(date +%s)
O=$RUN/overlay
install -m 755 tests/vm/kppp/init "$O/init"
for b in "${BINS[@]}"; do
    dst=$O/opt/eql/$(basename "$b")
    # Debug info stripped: a debug test binary is ten times smaller without it.
    if command -v strip >/dev/null && [[ $(od -An -tx1 -N4 "$b" | tr -d ' \n') = 7f454c46 ]]; then
        strip --strip-debug -o "$dst" "$b" 2>/dev/null || cp -L "$b" "$dst"
    else
        cp -L "$b" "$dst"
    fi
    chmod 755 "$dst"
    add_libs "$O" "$b"
done
[[ -n $SCRIPT ]] && install -m 755 "$SCRIPT" "$O/opt/eql/payload"
: >"$O/opt/eql/env"
for e in "${ENVS[@]}"; do
    printf "export %s='%s'\n" "${e%%=*}" "$(printf '%s' "${e#*=}" | sed "s/'/'\\\\''/g")" >>"$O/opt/eql/env"
done
(cd "$O" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$RUN/overlay.cpio.gz"
# The kernel unpacks concatenated archives one after the other; later files win.
cat "$GUEST/base.cpio.gz" "$RUN/overlay.cpio.gz" >"$RUN/initrd.img"
rm -rf "$O" "$RUN/overlay.cpio.gz"

# --- boot ---------------------------------------------------------------------------------
# console_text: the console as text: no carriage returns, no terminal control sequences (the
# firmware clears the screen).
console_text() { sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g'; }
: >"$RUN/console.log"
APPEND="console=ttyS0 loglevel=4 panic=-1 8250.nr_uarts=1 tsc=reliable"
say "booting ($VM_ACCEL, ${SMP} vCPU, timeout ${TIMEOUT}s); console: $RUN/console.log"
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -name kppp -M pc -accel "$VM_ACCEL" \
    -cpu "$VM_CPU" -smp "$SMP" -m 1024 -nographic -nodefaults -no-user-config -no-reboot \
    -monitor none -parallel none -serial "file:$RUN/console.log" \
    -kernel "$GUEST/vmlinuz" -initrd "$RUN/initrd.img" -append "$APPEND" \
    </dev/null >"$RUN/qemu.log" 2>&1 &
QPID=$!
TPID=""
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    if [[ -n $QPID ]]; then
        kill -TERM "$QPID" 2>/dev/null || true
        wait "$QPID" 2>/dev/null || true
    fi
    if [[ -n $TPID ]]; then
        kill "$TPID" 2>/dev/null || true
        wait "$TPID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
if [[ $QUIET = 0 ]]; then
    tail -n +1 -F --pid="$QPID" "$RUN/console.log" 2>/dev/null | console_text &
    TPID=$!
fi
qrc=0
wait "$QPID" || qrc=$?
QPID=""
if [[ -n $TPID ]]; then
    wait "$TPID" 2>/dev/null || true
    TPID=""
fi
TOTAL=$(($(date +%s) - T0))

# --- the verdict --------------------------------------------------------------------------
console_text <"$RUN/console.log" >"$RUN/console.txt"
mapfile -t results < <(grep -a '^KPPP-RESULT ' "$RUN/console.txt" || true)
done_rc=$(grep -a -o '^KPPP-DONE rc=[0-9]*' "$RUN/console.txt" | tail -n 1 | cut -d= -f2 || true)
rm -f "$RUN/console.txt"
passed=0 failed=0
for r in "${results[@]}"; do
    case $r in
    "KPPP-RESULT PASS "*) passed=$((passed + 1)) ;;
    *) failed=$((failed + 1)) ;;
    esac
done
echo "--- kppp guest results ($VM_ACCEL, ${TOTAL}s, console: $RUN/console.log)"
for r in "${results[@]}"; do
    r=${r#KPPP-RESULT }
    printf '%-4s %s\n' "${r%% *}" "${r#* }"
done
if [[ -z $done_rc ]]; then
    if ((qrc == 124 || qrc == 137)); then
        echo "FAIL kppp guest: no KPPP-DONE within ${TIMEOUT}s (QEMU killed); last console lines:"
        rc=124
    else
        echo "FAIL kppp guest: the guest ended without KPPP-DONE (QEMU exit $qrc); last console lines:"
        rc=1
    fi
    tail -n 20 "$RUN/console.log" | console_text
    [[ -s $RUN/qemu.log ]] && cat "$RUN/qemu.log"
    failed=$((failed + 1))
else
    rc=$done_rc
    ((rc == 0 && failed > 0)) && rc=1
    ((rc != 0 && failed == 0)) && failed=1
fi
echo "kppp guest: $passed passed, $failed failed"
exit "$rc"
