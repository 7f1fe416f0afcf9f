#!/usr/bin/env bash
# Builds the guest base image (Debian 12, cloud-init NoCloud) from Debian
# packages: debootstrap -> rootfs -> mkfs.ext4 -d -> qcow2, plus the kernel and
# initrd for direct kernel boot. No loop mounts, no downloads after the first
# build (the debootstrap tarball is cached).
#
#   tools/guest-image.sh            build unless the recipe is unchanged
#   tools/guest-image.sh --force    rebuild the current recipe
#
# Recipe = this script + everything under tools/guest-image/ (packages list,
# files copied into the image). Output, per recipe hash H (files 0644):
#   <images>/H/debian-12.qcow2  vmlinuz  initrd.img  build-info.json
#   <images>/H/packages.manifest   (name, version, arch of every package)
#   $TENANCY_CACHE/images/current -> <images>/H   (absolute symlink)
# <images> is $TENANCY_CACHE/images when the libvirt-qemu user can reach it,
# otherwise /var/lib/tenancy/images (root's home is mode 0700 on Debian, and
# QEMU runs as libvirt-qemu); $TENANCY_CACHE/images/H then links there.
# Always hand libvirt the resolved path (realpath), never one under /root.
# Override with TENANCY_IMAGES=/some/dir.
set -euo pipefail
# shellcheck source=tools/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=tools/packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/packages.sh"
PKG_LOG_PREFIX=guest-image

SUITE=bookworm
MIRROR="${TENANCY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE_NAME=debian-12
DISK_SIZE=3G
RECIPE_DIR="$TENANCY_ROOT/tools/guest-image"
CACHE_INDEX="$TENANCY_CACHE/images"
FALLBACK_IMAGES=/var/lib/tenancy/images
QEMU_USER=libvirt-qemu
HOST_PACKAGES=(debootstrap debian-archive-keyring qemu-utils e2fsprogs util-linux python3)

log() { printf 'guest-image: %s\n' "$*"; }
die() { printf 'guest-image: ERROR: %s\n' "$*" >&2; exit 1; }

FORCE=0
case "${1:-}" in
  "") ;;
  --force) FORCE=1 ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"

recipe_hash() {
  (
    cd "$TENANCY_ROOT/tools"
    sha256sum guest-image.sh
    find guest-image -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -c1-16
}

# True when the QEMU user can read PATH (every directory along it traversable).
qemu_can_read() {
  local path=$1
  if id -u "$QEMU_USER" >/dev/null 2>&1; then
    runuser -u "$QEMU_USER" -- test -r "$path"
    return
  fi
  # libvirt not installed yet: require world-traversable directories
  local d
  d=$(realpath -m "$path")
  while [ "$d" != / ]; do
    d=$(dirname "$d")
    [ -e "$d" ] || continue
    [ "$(( 0$(stat -c %a "$d") & 1 ))" -eq 1 ] || return 1
  done
}

images_dir() {
  if [ -n "${TENANCY_IMAGES:-}" ]; then echo "$TENANCY_IMAGES"; return; fi
  mkdir -p "$CACHE_INDEX"
  if qemu_can_read "$CACHE_INDEX"; then echo "$CACHE_INDEX"; else echo "$FALLBACK_IMAGES"; fi
}

# Points $TENANCY_CACHE/images/current (and /H when the images live
# elsewhere) at the recipe directory, with absolute targets.
publish() {
  local dir=$1 h=$2
  mkdir -p "$CACHE_INDEX"
  if [ "$(realpath "$CACHE_INDEX/$h" 2>/dev/null)" != "$dir" ]; then
    ln -sfnT "$dir" "$CACHE_INDEX/$h"
  fi
  if [ "$(readlink "$CACHE_INDEX/current" 2>/dev/null)" != "$dir" ]; then
    ln -sfnT "$dir" "$CACHE_INDEX/current.tmp"
    mv -Tf "$CACHE_INDEX/current.tmp" "$CACHE_INDEX/current"
  fi
}

packages_csv() {
  sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$RECIPE_DIR/packages" | paste -sd, -
}

HASH=$(recipe_hash)
IMAGES=$(images_dir)
DEST="$IMAGES/$HASH"

if [ "$FORCE" -eq 0 ] && [ -f "$DEST/build-info.json" ] && [ -f "$DEST/$IMAGE_NAME.qcow2" ]; then
  publish "$DEST" "$HASH"
  log "up to date: $DEST/$IMAGE_NAME.qcow2 (recipe $HASH; current -> it)"
  exit 0
fi

# --- build ----------------------------------------------------------------------

T0=$(date +%s.%N)
step_t=$T0
step() { # prints the previous step's duration with a message
  local now; now=$(date +%s.%N)
  log "$1 ($(awk -v a="$now" -v b="$step_t" 'BEGIN {printf "%.1f", a - b}') s)"
  step_t=$now
}

ensure_packages "image build" "${HOST_PACKAGES[@]}"

mkdir -p "$IMAGES"
chmod 0755 "$IMAGES"
if [ "$IMAGES" = "$FALLBACK_IMAGES" ]; then chmod 0755 "$(dirname "$IMAGES")"; fi
# one build at a time; a concurrent run may have finished this recipe meanwhile
exec 9>"$IMAGES/.lock"
flock 9
if [ "$FORCE" -eq 0 ] && [ -f "$DEST/build-info.json" ] && [ -f "$DEST/$IMAGE_NAME.qcow2" ]; then
  publish "$DEST" "$HASH"
  log "up to date: $DEST/$IMAGE_NAME.qcow2 (built by a concurrent run)"
  exit 0
fi
log "building recipe $HASH into $DEST"
WORK=$(mktemp -d "$IMAGES/.build-$HASH.XXXXXX")
ROOTFS="$WORK/rootfs"

cleanup() {
  local m
  # debootstrap unmounts what it mounts; make sure before deleting anything
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r)
  if awk -v w="$WORK/" 'index($2, w) == 1 {found = 1} END {exit !found}' /proc/mounts; then
    log "leaving $WORK in place: something is still mounted under it"
  else
    rm -rf --one-file-system "$WORK"
  fi
}
trap cleanup EXIT

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# 1. debootstrap tarball (downloaded once per package list and mirror)
PKGS=$(packages_csv)
TARBALL_KEY=$(printf '%s\n' "$SUITE" minbase "$MIRROR" "$PKGS" | sha256sum | cut -c1-16)
TARBALL="$TENANCY_CACHE/debootstrap/$SUITE-minbase-$TARBALL_KEY.tgz"
if [ -f "$TARBALL" ]; then
  step "debootstrap tarball: cached $(basename "$TARBALL") ($(du -h "$TARBALL" | cut -f1))"
else
  mkdir -p "$(dirname "$TARBALL")"
  debootstrap --variant=minbase --include="$PKGS" --make-tarball="$TARBALL.part" \
    "$SUITE" "$WORK/tarball" "$MIRROR" >"$WORK/debootstrap-download.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap-download.log" >&2; die "debootstrap --make-tarball failed"; }
  mv "$TARBALL.part" "$TARBALL"
  rm -rf "$WORK/tarball"
  step "debootstrap tarball: downloaded $(basename "$TARBALL") ($(du -h "$TARBALL" | cut -f1))"
fi

# 2. rootfs from the tarball (no network)
if ! debootstrap --variant=minbase --include="$PKGS" --unpack-tarball="$TARBALL" \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  grep -v '^I: ' "$WORK/debootstrap.log" | tail -5 >&2
  # the usual cause: a dependency on a virtual package, which debootstrap does
  # not resolve; dpkg names it (add the providing package to the list)
  mount -t proc proc "$ROOTFS/proc"
  in_root dpkg --configure -a 2>&1 | grep -A3 'dependency problems\|^dpkg: error' | head -20 >&2 || true
  umount "$ROOTFS/proc"
  die "debootstrap failed (dpkg errors above; add missing providers to tools/guest-image/packages)"
fi
step "debootstrap: rootfs installed ($(du -sh --one-file-system "$ROOTFS" | cut -f1))"

# 3. customise: files from the recipe, services, per-VM identity removed
cp -rT --no-preserve=ownership "$RECIPE_DIR/rootfs" "$ROOTFS"
in_root systemctl enable --quiet systemd-networkd.service
in_root systemctl enable --quiet ssh.service
for u in cloud-init-local cloud-init cloud-config cloud-final; do
  in_root systemctl is-enabled --quiet "$u.service" || in_root systemctl enable --quiet "$u.service"
done
: >"$ROOTFS/etc/machine-id"                       # generated on first boot
mkdir -p "$ROOTFS/var/lib/dbus"
ln -sfn /etc/machine-id "$ROOTFS/var/lib/dbus/machine-id"
rm -f "$ROOTFS"/etc/ssh/ssh_host_*               # cloud-init creates ed25519 per VM
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
rm -rf "$ROOTFS"/var/lib/cloud/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
rm -f "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old
find "$ROOTFS/var/log" -type f -exec truncate -s 0 {} +
KERNEL=$(find "$ROOTFS/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
INITRD=$(find "$ROOTFS/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -1)
if [ -z "$KERNEL" ] || [ -z "$INITRD" ]; then die "no kernel/initrd in the rootfs"; fi
KVER=${KERNEL##*/vmlinuz-}
# shellcheck disable=SC2016 # dpkg-query formats, not shell expansions
CLOUD_INIT_VERSION=$(in_root dpkg-query -W -f='${Version}' cloud-init)
# shellcheck disable=SC2016
PACKAGE_COUNT=$(in_root dpkg-query -W -f='${db:Status-Status}\n' | grep -c '^installed$')
mkdir -p "$WORK/out"
# shellcheck disable=SC2016
in_root dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\n' | LC_ALL=C sort >"$WORK/out/packages.manifest"
step "customised: networkd + ssh + cloud-init enabled, machine-id emptied, host keys removed (kernel $KVER, cloud-init $CLOUD_INIT_VERSION, $PACKAGE_COUNT packages)"

# 4. file system image without loop mounts, then qcow2
ROOTFS_BYTES=$(du -sb --one-file-system "$ROOTFS" | cut -f1)
mkfs.ext4 -q -F -L rootfs -d "$ROOTFS" "$WORK/rootfs.raw" "$DISK_SIZE" >/dev/null
step "mkfs.ext4 -d: $DISK_SIZE rootfs.raw"
qemu-img convert -O qcow2 "$WORK/rootfs.raw" "$WORK/out/$IMAGE_NAME.qcow2"
cp "$KERNEL" "$WORK/out/vmlinuz"
cp "$INITRD" "$WORK/out/initrd.img"
chmod 0644 "$WORK/out"/*
chmod 0755 "$WORK/out"
step "qemu-img convert: $IMAGE_NAME.qcow2 ($(du -h "$WORK/out/$IMAGE_NAME.qcow2" | cut -f1))"

# 5. build-info.json, then publish atomically
T1=$(date +%s.%N)
OUT="$WORK/out" DEST="$DEST" HASH="$HASH" SUITE="$SUITE" MIRROR="$MIRROR" PKGS="$PKGS" \
KVER="$KVER" CI_VER="$CLOUD_INIT_VERSION" NPKG="$PACKAGE_COUNT" ROOTFS_BYTES="$ROOTFS_BYTES" \
DISK_SIZE="$DISK_SIZE" T0="$T0" T1="$T1" IMAGE_NAME="$IMAGE_NAME" python3 - <<'EOF'
import json, os, subprocess, datetime
e = os.environ
out, dest, name = e["OUT"], e["DEST"], e["IMAGE_NAME"]
qinfo = json.loads(subprocess.check_output(
    ["qemu-img", "info", "--output=json", f"{out}/{name}.qcow2"]))
info = {
    "recipe": e["HASH"],
    "name": name,
    "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "build_seconds": round(float(e["T1"]) - float(e["T0"]), 1),
    "suite": e["SUITE"],
    "mirror": e["MIRROR"],
    "kernel_version": e["KVER"],
    "cloud_init_version": e["CI_VER"],
    "packages_installed": int(e["NPKG"]),
    "packages_requested": e["PKGS"].split(","),
    "files": {
        "manifest": f"{dest}/packages.manifest",
        "image": f"{dest}/{name}.qcow2",
        "kernel": f"{dest}/vmlinuz",
        "initrd": f"{dest}/initrd.img",
    },
    "sizes": {
        "image_bytes": os.path.getsize(f"{out}/{name}.qcow2"),
        "image_virtual_bytes": qinfo["virtual-size"],
        "rootfs_content_bytes": int(e["ROOTFS_BYTES"]),
        "kernel_bytes": os.path.getsize(f"{out}/vmlinuz"),
        "initrd_bytes": os.path.getsize(f"{out}/initrd.img"),
    },
    "format": "qcow2",
    "boot": {
        "kernel_cmdline": "root=/dev/vda rw console=ttyS0 net.ifnames=0",
        "disk_bus": "virtio",
        "nic_name": "eth0",
    },
    "cloud_init": {
        "datasources": ["NoCloud", "None"],
        "seed_volume_label": "cidata",
        "network_renderer": "networkd",
        "ssh_host_key_types": ["ed25519"],
    },
}
with open(f"{out}/build-info.json", "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
EOF
chmod 0644 "$WORK/out/build-info.json"
rm -rf "$DEST"
mv -T "$WORK/out" "$DEST"
publish "$DEST" "$HASH"
for f in "$IMAGE_NAME.qcow2" vmlinuz initrd.img; do
  qemu_can_read "$DEST/$f" || die "$DEST/$f is not readable by $QEMU_USER"
done
step "published: $TENANCY_CACHE/images/current -> $DEST"
log "$(printf 'built in %s s: %s %s (virtual %s), vmlinuz %s, initrd.img %s' \
  "$(awk -v a="$T1" -v b="$T0" 'BEGIN {printf "%.0f", a - b}')" "$IMAGE_NAME.qcow2" \
  "$(du -h "$DEST/$IMAGE_NAME.qcow2" | cut -f1)" "$DISK_SIZE" \
  "$(du -h "$DEST/vmlinuz" | cut -f1)" "$(du -h "$DEST/initrd.img" | cut -f1)")"
