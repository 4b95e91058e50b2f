#!/usr/bin/env bash
# build-guest.sh OUT: builds the systemd guest of tests/vm/systemd-guest.sh into OUT (as root):
#   OUT/root        the root file system: Debian (debootstrap --variant=minbase) with systemd as
#                   PID 1, dbus, udev, nftables, iproute2, jq and the distribution kernel
#   OUT/vmlinuz     that kernel, and OUT/initrd.img, the initramfs Debian built for it (it has
#                   virtio_blk and ext4, which the kernel has as modules)
#   OUT/manifest    what went in
# systemd-guest.sh caches OUT under a hash of this file, the suite and the mirror; each run
# copies OUT/root, installs eqlplus-dialer into the copy and boots it from an ext4 image.
# EQLPLUS_VM_SUITE (default: the host's Debian release, else bookworm) and EQLPLUS_VM_MIRROR
# (default http://deb.debian.org/debian) choose what is installed.
set -euo pipefail
OUT=${1:?usage: build-guest.sh OUT}
SUITE=${EQLPLUS_VM_SUITE:-bookworm}
MIRROR=${EQLPLUS_VM_MIRROR:-http://deb.debian.org/debian}
# systemd-sysv: systemd as /sbin/init. udev: device units and module autoloading (tun,
# nf_tables). kmod: the modprobe the kernel calls for those. jq: the checks read `status --json`.
PACKAGES=systemd,systemd-sysv,dbus,udev,kmod,nftables,iproute2,procps,jq,linux-image-amd64

say() { echo "[build-guest] $*" >&2; }
T0=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT"
R=$OUT/root.tmp
say "debootstrap $SUITE from $MIRROR into $R (a few minutes)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$R" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 || {
    tail -n 30 "$OUT/debootstrap.log" >&2
    exit 1
}

KVER=$(ls -1 "$R/lib/modules" | head -n 1)
[[ -n $KVER && -f $R/boot/vmlinuz-$KVER && -f $R/boot/initrd.img-$KVER ]] || {
    echo "build-guest: no kernel or initramfs in $R/boot" >&2
    exit 1
}
cp "$R/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
cp "$R/boot/initrd.img-$KVER" "$OUT/initrd.img"
# QEMU boots the kernel directly (-kernel/-initrd): the guest needs no copy in /boot.
rm -rf "${R:?}"/boot/*

# The guest: one disk, no network card, a serial console; nothing but systemd's own units and
# the ones a run installs.
echo eqlvm >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\teqlvm\n' >"$R/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$R/etc/fstab"
# Root may log in on the console without a password (for debugging a run with --keep).
sed -i 's/^root:[^:]*:/root::/' "$R/etc/shadow"
# Timers that would only make noise (apt has no network here).
for u in apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$R/etc/systemd/system/$u"
done
# A persistent journal is not needed; keep it in memory, unlimited by rate (the checks read it).
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' >"$R/etc/systemd/journald.conf.d/eqlvm.conf"

# Smaller copies per run: package caches, docs, and kernel modules no guest here loads (the
# initramfs has its own copy of what boot needs).
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* \
    "$R"/usr/share/man/* "$R"/usr/share/locale/*
M=$R/lib/modules/$KVER/kernel
# Of USB only what makes USB modem ttys (usbserial: ttyUSB, cdc-acm: ttyACM): the check that a
# hotplugged one may be opened under the unit's DeviceAllow needs their majors registered.
find "$M"/drivers/usb -mindepth 1 -maxdepth 1 ! -name core ! -name common ! -name serial ! -name class \
    -exec rm -rf {} +
rm -rf "$M"/sound "$M"/drivers/{gpu,media,infiniband,staging,scsi,net/wireless,net/ethernet,bluetooth,input,hid,iio,md,isdn,mtd,platform,video,hwmon,edac,thunderbolt,nvme,target,ata} \
    "$M"/net/{bluetooth,wireless,mac80211,ceph,sunrpc,rxrpc,mac802154,ieee802154,nfc,9p} \
    "$M"/fs/{btrfs,xfs,nfs,nfsd,ocfs2,gfs2,cifs,smb,ceph,f2fs,jfs,reiserfs,nilfs2,ubifs,udf,ntfs3,afs,orangefs,dlm}
chroot "$R" depmod "$KVER"
mv "$R" "$OUT/root"

{
    echo "suite: $SUITE ($MIRROR)"
    echo "packages: $PACKAGES"
    echo "kernel: $KVER"
    echo "systemd: $(chroot "$OUT/root" dpkg-query -W -f='${Version}' systemd)"
    echo "root: $(du -sm "$OUT/root" | cut -f1) MiB"
    echo "built in: $(($(date +%s) - T0)) s"
} >"$OUT/manifest"
cat "$OUT/manifest" >&2
