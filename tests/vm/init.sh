#!/bin/busybox sh
# /init of the mattecam test VM (runs inside the guest, from the initramfs).
#
# Built into the initramfs by tests/vm/build.sh; driven by tests/vm/harness.py.
# Protocol (all through the 9p share tagged "ctl", mounted at /ctl):
#   /ctl/config.sh  sourced here; calls the helpers below (share, kmod, ...)
#                   and sets MV_CTL_PATH (host path of the ctl dir).
#   /ctl/run.sh     wrapper (cd + env -i + bash script.sh) run in the chroot.
#   /ctl/output     stdout+stderr of the test script (written by us).
#   /ctl/dmesg      guest kernel log after the script.
#   /ctl/rc         exit status of the test script (written last).
#   /ctl/init.log   log of this init (module loading, mounts).
# Console markers (serial): "MATTECAM-VM: ..." lines.

export PATH=/bin:/sbin
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /tmp
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "MATTECAM-VM: $*" > /dev/console; }
bye() {
    sync
    say "poweroff"
    poweroff -f
    echo o > /proc/sysrq-trigger
    sleep 5
}
fail() {
    say "INIT-FAIL: $*"
    [ -d /ctl ] && echo "init: $*" >> /ctl/init.log 2>/dev/null
    if [ -w /ctl ] 2>/dev/null; then echo 254 > /ctl/rc.tmp && mv /ctl/rc.tmp /ctl/rc; fi
    bye
}

say "init started (kernel $(uname -r))"

for m in virtio_pci virtio_rng 9pnet_virtio 9p overlay; do
    modprobe "$m" || fail "modprobe $m"
done

P9OPTS="trans=virtio,version=9p2000.L,msize=262144"

mkdir -p /ctl
mount -t 9p -o "$P9OPTS" ctl /ctl || fail "mount ctl share"
exec 3>>/ctl/init.log
log() { echo "$*" >&3; }
run() { log "+ $*"; "$@" >&3 2>&1; }

# Host root, read-only, with a tmpfs-backed overlay on top (everything is
# writable in the guest, nothing reaches the host).
mkdir -p /host /ovl /newroot
mount -t 9p -o "$P9OPTS,ro,cache=loose" hostroot /host || fail "mount host root"
mount -t tmpfs -o mode=0755 tmpfs /ovl
mkdir -p /ovl/upper /ovl/work
if ! run mount -t overlay overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work /newroot; then
    # Fallback: read-only root with tmpfs over the usual writable places.
    log "overlay failed, falling back to bind mounts"
    mount --bind /host /newroot || fail "bind host root"
    for d in tmp run var/tmp var/cache var/lib root; do
        [ -d "/newroot/$d" ] && mount -t tmpfs tmpfs "/newroot/$d"
    done
fi

mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount --bind /dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
ip link set lo up 2>/dev/null

# Kernel modules: make them visible to the chroot too, so kmod's modprobe
# from the host root works there (e.g. to reload v4l2loopback).
KVER=$(uname -r)
mkdir -p "/newroot/lib/modules" && cp -a "/lib/modules/$KVER" "/newroot/lib/modules/" \
    || log "could not copy modules into the chroot"

# Helpers for config.sh -------------------------------------------------------
# share TAG PATH: mount the writable 9p share TAG at PATH inside the chroot.
share() {
    mkdir -p "/newroot$2" || fail "mkdir /newroot$2"
    run mount -t 9p -o "$P9OPTS" "$1" "/newroot$2" || fail "mount share $1 at $2"
}
# kmod MODULE ARGS...: load a module (busybox modprobe, deps from modules.dep).
kmod() {
    run modprobe "$@" || fail "modprobe $*"
}

. /ctl/config.sh || fail "config.sh"
[ -n "$MV_CTL_PATH" ] || fail "MV_CTL_PATH not set"
mkdir -p "/newroot$MV_CTL_PATH" && mount --bind /ctl "/newroot$MV_CTL_PATH" || fail "bind ctl"

run ls -l /dev/video* 2>/dev/null
say "running script"
chroot /newroot /bin/sh "$MV_CTL_PATH/run.sh" </dev/null >/ctl/output 2>&1
rc=$?
dmesg > /ctl/dmesg 2>&1
echo "$rc" > /ctl/rc.tmp && mv /ctl/rc.tmp /ctl/rc
say "script exited with $rc"
exec 3>&-
umount /newroot$MV_CTL_PATH 2>/dev/null
bye
