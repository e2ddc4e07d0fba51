#!/usr/bin/env bash
# Build (or verify) everything the mattecam test VM needs:
#   - host packages (qemu, busybox-static, kmod, cpio, gcc-12, ffmpeg, ...) via apt-get
#   - Debian 12's kernel image + headers + kbuild (apt-get download + dpkg -x, NOT installed)
#   - v4l2loopback modules built from Debian's v4l2loopback-source for each suite
#     (bookworm: 0.12.x, trixie: 0.15.x; trixie is used through a private apt
#     config in the cache dir, the host's apt sources are left untouched)
#   - one initramfs per v4l2loopback version (busybox + tests/vm/init.sh + modules)
# into ${MATTECAM_VM_CACHE:-$HOME/.cache/mattecam-vm}.  Idempotent: every step
# is skipped when its output exists; a full no-op run takes well under a second.
#
# Usage: tests/vm/build.sh [--force] [--no-apt] [--quiet]
#   --force   throw away the cached build outputs (not the downloaded .debs) and redo
#   --no-apt  do not install missing host packages (fail instead)
#   --quiet   only print what is actually (re)built
# Env: MATTECAM_VM_CACHE  cache dir
#      MATTECAM_VM_KVER   kernel ABI to use, e.g. 6.1.0-56-amd64 (default: the one
#                         already cached, else what linux-headers-amd64 points to)
#      MATTECAM_VM_TRIXIE_MIRROR  Debian mirror for the trixie download (default: the
#                         host's Debian mirror from its apt sources, else deb.debian.org)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MATTECAM_VM_CACHE:-$HOME/.cache/mattecam-vm}
# suite -> the v4l2loopback-source of that suite is built
LOOPBACK_SUITES=(bookworm trixie)
# Mirror for the trixie source list: the host's Debian mirror, else deb.debian.org.
host_mirror() {
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}'
    } | grep -E '/debian/?$' | head -n1 || true
}
TRIXIE_MIRROR=${MATTECAM_VM_TRIXIE_MIRROR:-$(host_mirror)}
TRIXIE_MIRROR=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
# Kernel modules put into the initramfs (plus their dependencies).
BASE_MODULES=(virtio_pci virtio_rng 9pnet_virtio 9p overlay)
EXTRA_MODULES=(videodev vivid)
# Host packages: build + run (the guest runs host binaries: ffmpeg, v4l2-ctl, chromium
# as the browser consumer of test_virtual_camera.py).
HOST_PKGS=(qemu-system-x86 busybox-static kmod cpio xz-utils bzip2 gcc-12 make
           libelf1 ffmpeg v4l-utils chromium)
# Bump when the layout of the outputs changes (forces initramfs rebuild).
FORMAT=1

FORCE=0; APT=1; QUIET=0
for a in "$@"; do
    case $a in
        --force) FORCE=1 ;;
        --no-apt) APT=0 ;;
        --quiet|-q) QUIET=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $a" >&2; exit 2 ;;
    esac
done

T0=$(date +%s.%N)
info() { [ "$QUIET" = 1 ] || echo "[vm-build] $*"; }
step() { echo "[vm-build] >>> $*"; }
die() { echo "[vm-build] ERROR: $*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null && SUDO=(sudo)
fi
APT_ROOT_OPTS=()
[ "$(id -u)" = 0 ] && APT_ROOT_OPTS=(-o APT::Sandbox::User=root)

APT_UPDATED=0
apt_update_once() {
    [ "$APT_UPDATED" = 1 ] && return 0
    [ "$APT" = 1 ] || return 0
    step "apt-get update"
    "${SUDO[@]}" apt-get update -q | grep -vE '^(Get|Hit|Ign):' || true
    APT_UPDATED=1
}

# --- 1. host packages -------------------------------------------------------
missing=()
for p in "${HOST_PKGS[@]}"; do
    s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$s" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$APT" = 1 ] || die "missing host packages: ${missing[*]} (run without --no-apt, or apt-get install them)"
    step "installing host packages: ${missing[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    info "host packages present: ${HOST_PKGS[*]}"
fi

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
DEBS=$CACHE/debs
mkdir -p "$DEBS"

if [ "$FORCE" = 1 ]; then
    step "--force: removing cached build outputs (keeping $DEBS)"
    rm -rf "$CACHE"/kernel-* "$CACHE"/v4l2loopback "$CACHE"/out "$CACHE"/KVER "$CACHE"/manifest.json
fi

# apt-get download PKG (host apt sources) into $DEBS unless a .deb of it is there already.
deb_of() { local f; for f in "$DEBS"/"$1"_*.deb; do [ -e "$f" ] && { echo "$f"; return 0; }; done; return 0; }
fetch() {
    local pkg=$1 have
    have=$(deb_of "$pkg")
    if [ -n "$have" ]; then
        info "have $(basename "$have")"
    else
        step "downloading $pkg"
        (cd "$DEBS" && apt-get "${APT_ROOT_OPTS[@]}" -q download "$pkg" 2>&1 | grep -v '^Get:' || true)
        [ -n "$(deb_of "$pkg")" ] || die "apt-get download $pkg failed"
    fi
}

# --- 2. kernel ----------------------------------------------------------------
if [ -n "${MATTECAM_VM_KVER:-}" ]; then
    KVER=$MATTECAM_VM_KVER
elif [ -s "$CACHE/KVER" ]; then
    KVER=$(cat "$CACHE/KVER")
else
    resolve() { apt-cache depends linux-headers-amd64 2>/dev/null | sed -n 's/^ *Depends: linux-headers-\(.*\)$/\1/p' | head -n1; }
    dep=$(resolve)
    if [ -z "$dep" ]; then apt_update_once; dep=$(resolve); fi
    [ -n "$dep" ] || die "cannot resolve linux-headers-amd64 (apt-get update?)"
    KVER=$dep
fi
echo "$KVER" > "$CACHE/KVER"
info "kernel ABI $KVER"
KDIR=$CACHE/kernel-$KVER
KROOT=$KDIR/root
HDR=$KROOT/usr/src/linux-headers-$KVER

if [ ! -e "$KDIR/.unpacked" ]; then
    apt-cache show "linux-headers-$KVER" >/dev/null 2>&1 || apt_update_once
    img=linux-image-$KVER-unsigned
    if ! apt-cache show "$img" >/dev/null 2>&1; then img=linux-image-$KVER; fi
    hdeps=$(apt-cache show --no-all-versions "linux-headers-$KVER" | sed -n 's/^Depends: //p' | head -n1)
    [ -n "$hdeps" ] || die "linux-headers-$KVER not known to apt (apt-get update? or set MATTECAM_VM_KVER)"
    common=$(echo "$hdeps" | tr ',' '\n' | sed -n 's/^ *\(linux-headers-[^ ]*-common\).*/\1/p' | head -n1)
    kbuild=$(echo "$hdeps" | tr ',' '\n' | sed -n 's/^ *\(linux-kbuild-[^ ]*\).*/\1/p' | head -n1)
    [ -n "$common" ] && [ -n "$kbuild" ] || die "cannot parse Depends of linux-headers-$KVER: $hdeps"
    for p in "$img" "linux-headers-$KVER" "$common" "$kbuild"; do fetch "$p"; done
    step "unpacking kernel $KVER into $KDIR"
    rm -rf "$KDIR"; mkdir -p "$KROOT"
    for p in "$img" "linux-headers-$KVER" "$common" "$kbuild"; do
        dpkg -x "$(deb_of "$p")" "$KROOT"
    done
    # The headers' Makefile includes the -common Makefile by absolute path.
    sed -i "s#/usr/src/#$KROOT/usr/src/#g" "$HDR/Makefile"
    grep -q "$KROOT/usr/src/" "$HDR/Makefile" || die "could not rewrite $HDR/Makefile"
    depmod -b "$KROOT" "$KVER"
    touch "$KDIR/.unpacked"
else
    info "kernel unpacked in $KDIR"
fi

VMLINUZ=$KROOT/boot/vmlinuz-$KVER
VMLINUX=$KDIR/vmlinux
if [ ! -s "$VMLINUX" ]; then
    step "extracting uncompressed vmlinux (PVH-bootable ELF) from $(basename "$VMLINUZ")"
    ok=0
    # Find the compressed payload (xz, zstd or gzip) and decompress the first stream that is an ELF.
    for spec in 'fd377a585a00:xz -dc --single-stream' '28b52ffd:zstd -dc' '1f8b0800:gzip -dc'; do
        magic=${spec%%:*}; cmd=${spec#*:}
        command -v "${cmd%% *}" >/dev/null || continue
        pat=$(echo "$magic" | sed 's/../\\x&/g')
        for off in $(LC_ALL=C grep -obUaP "$pat" "$VMLINUZ" | cut -d: -f1); do
            tail -c +$((off + 1)) "$VMLINUZ" | $cmd > "$VMLINUX.tmp" 2>/dev/null || true
            if [ "$(head -c 4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then ok=1; break 2; fi
        done
    done
    [ "$ok" = 1 ] || { rm -f "$VMLINUX.tmp"; die "could not extract vmlinux from $VMLINUZ"; }
    mv "$VMLINUX.tmp" "$VMLINUX"
else
    info "have $VMLINUX"
fi

# --- 3. v4l2loopback sources + modules --------------------------------------
TRIXIE_APT=$CACHE/apt-trixie
trixie_opts() {
    echo -o "Dir::Etc::SourceList=$TRIXIE_APT/sources.list" -o "Dir::Etc::SourceParts=$TRIXIE_APT/empty" \
         -o "Dir::Etc::PreferencesParts=$TRIXIE_APT/empty" -o "Dir::Etc::Preferences=$TRIXIE_APT/empty/none" \
         -o "Dir::State::Lists=$TRIXIE_APT/lists" -o "Dir::Cache=$TRIXIE_APT/cache"
}
LB=$CACHE/v4l2loopback
mkdir -p "$LB"
LABELS=()
for suite in "${LOOPBACK_SUITES[@]}"; do
    pkg=v4l2loopback-source
    lpkg=$pkg-$suite       # cached .deb is renamed to carry the suite
    if [ -z "$(deb_of "$lpkg")" ]; then
        rm -f "$DEBS"/${pkg}_*.deb   # leftovers of an interrupted run
        if [ "$suite" = bookworm ]; then
            apt-cache show "$pkg" >/dev/null 2>&1 || apt_update_once
            fetch "$pkg"  # the host's own apt sources (this is Debian 12)
            f=$(deb_of "$pkg")
        else
            mkdir -p "$TRIXIE_APT"/{lists/partial,cache/archives/partial,empty}
            echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $TRIXIE_MIRROR $suite main" \
                > "$TRIXIE_APT/sources.list"
            step "apt-get update of a private $suite source list (only for $pkg)"
            # shellcheck disable=SC2046
            apt-get "${APT_ROOT_OPTS[@]}" -q $(trixie_opts) update 2>&1 | grep -vE '^(Get|Hit|Ign):' || true
            step "downloading $pkg from $suite"
            # shellcheck disable=SC2046
            (cd "$DEBS" && apt-get "${APT_ROOT_OPTS[@]}" -q $(trixie_opts) download "$pkg" 2>&1 | grep -v '^Get:' || true)
            f=$(deb_of "$pkg")
            [ -n "$f" ] || die "download of $pkg from $suite failed"
        fi
        v=$(dpkg-deb -f "$f" Version)
        mv "$f" "$DEBS/${lpkg}_${v}_all.deb"
    fi
    f=$(deb_of "$lpkg")
    v=$(dpkg-deb -f "$f" Version)
    label=${v#*:}; label=${label%-*}   # upstream version, e.g. 0.12.7
    LABELS+=("$label")
    d=$LB/$label
    ko=$d/v4l2loopback.ko
    if [ ! -s "$ko" ] || [ "$(cat "$d/.built-for" 2>/dev/null)" != "$KVER $v" ]; then
        step "building v4l2loopback $label ($suite, $v) for $KVER"
        rm -rf "$d"; mkdir -p "$d/deb"
        dpkg -x "$f" "$d/deb"
        tar -C "$d" -xjf "$d/deb/usr/src/v4l2loopback.tar.bz2"
        src=$d/modules/v4l2loopback
        [ -f "$src/v4l2loopback.c" ] || die "unexpected layout of $f"
        make -s -C "$HDR" M="$src" modules > "$d/build.log" 2>&1 || { cat "$d/build.log"; die "build of v4l2loopback $label failed"; }
        cp "$src/v4l2loopback.ko" "$ko"
        vm=$(modinfo -F vermagic "$ko")
        case $vm in "$KVER "*) ;; *) die "vermagic '$vm' of $ko does not match $KVER" ;; esac
        echo "$KVER $v" > "$d/.built-for"
        info "built $ko (sha256 $(sha256sum "$ko" | cut -c1-16))"
    else
        info "have v4l2loopback $label module ($suite)"
    fi
done

# --- 4. initramfs per v4l2loopback version ---------------------------------
OUT=$CACHE/out
mkdir -p "$OUT"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (busybox-static)"
file_id() { stat -c '%s %Y' "$1"; }
INIT_SUM=$(sha256sum "$HERE/init.sh" | cut -c1-16)
want_modules=("${BASE_MODULES[@]}" "${EXTRA_MODULES[@]}")
for label in "${LABELS[@]}"; do
    ko=$LB/$label/v4l2loopback.ko
    img=$OUT/initramfs-$label.cpio
    key="format=$FORMAT init=$INIT_SUM kver=$KVER mods=${want_modules[*]} ko=$(file_id "$ko") busybox=$(file_id "$BUSYBOX")"
    if [ -s "$img" ] && [ "$(cat "$img.key" 2>/dev/null)" = "$key" ]; then
        info "have $img"
        continue
    fi
    step "assembling $img"
    st=$OUT/stage-$label
    rm -rf "$st"; mkdir -p "$st"/{bin,dev,proc,sys,tmp,lib/modules/"$KVER"/extra}
    cp "$BUSYBOX" "$st/bin/busybox"
    install -m 0755 "$HERE/init.sh" "$st/init"
    # resolve dependencies against the full kernel module tree
    deps=$(modprobe -d "$KROOT" -S "$KVER" -a --show-depends "${want_modules[@]}" | awk '$1=="insmod"{print $2}' | sort -u)
    for dm in $(modinfo -F depends "$ko" | tr ',' ' '); do
        deps+=$'\n'$(modprobe -d "$KROOT" -S "$KVER" --show-depends "$dm" | awk '$1=="insmod"{print $2}')
    done
    for p in $(echo "$deps" | sort -u); do
        rel=${p#"$KROOT/lib/modules/$KVER/"}
        mkdir -p "$st/lib/modules/$KVER/$(dirname "$rel")"
        cp "$p" "$st/lib/modules/$KVER/$rel"
    done
    cp "$ko" "$st/lib/modules/$KVER/extra/"
    cp "$KROOT/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$st/lib/modules/$KVER/"
    depmod -b "$st" "$KVER"
    n=$(find "$st/lib/modules" -name '*.ko' | wc -l)
    (cd "$st" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) > "$img.tmp"
    mv "$img.tmp" "$img"
    echo "$key" > "$img.key"
    rm -rf "$st"
    info "$img: $n modules, $(du -h "$img" | cut -f1)"
done

# --- 5. manifest -----------------------------------------------------------
# json_map NAME PREFIX SUFFIX: "label": "PREFIX<label>SUFFIX" for each label
json_map() {
    local sep="" label
    echo "  \"$1\": {"
    for label in "${LABELS[@]}"; do
        printf '%s    "%s": "%s"' "$sep" "$label" "$2$label$3"
        sep=$',\n'
    done
    printf '\n  }'
}
{
    echo "{"
    echo "  \"format\": $FORMAT,"
    echo "  \"kver\": \"$KVER\","
    echo "  \"kernel\": \"$VMLINUX\","
    echo "  \"vmlinuz\": \"$VMLINUZ\","
    echo "  \"init_sha\": \"$INIT_SUM\","
    json_map initramfs "$OUT/initramfs-" ".cpio"; echo ","
    json_map modules "$LB/" "/v4l2loopback.ko"; echo
    echo "}"
} > "$CACHE/manifest.json.tmp"
if ! cmp -s "$CACHE/manifest.json.tmp" "$CACHE/manifest.json" 2>/dev/null; then
    mv "$CACHE/manifest.json.tmp" "$CACHE/manifest.json"
    step "wrote $CACHE/manifest.json"
else
    rm -f "$CACHE/manifest.json.tmp"
fi
T1=$(date +%s.%N)
echo "[vm-build] ready: kernel $KVER, v4l2loopback ${LABELS[*]} in $CACHE ($(awk "BEGIN{printf \"%.1f\", $T1 - $T0}") s)"
