#!/usr/bin/env bash
# The shipped unit under a real systemd: boot a Debian cloud kernel under
# qemu (TCG) with a Debian root filesystem whose PID 1 is systemd, install
# the package (dist/xdpguard_*.deb, or $XDPGUARD_DEB), start xdpguard.service
# with the shipped /etc/default/xdpguard (only XDPGUARD_IFACES set, to a veth
# of the guest; drop events on, at their default path under /var/log) and
# check what test/systemd/guest.sh checks: the unit stays active with no
# restart, writes its events file, survives reload and upgrade, leaves the
# filter pinned when stopped, and removal detaches it.
#
# Cached between runs, in $SYSTEMD_CACHE (/var/cache/xdpguard-systemd): the
# root filesystem (debootstrap --variant=minbase with systemd, iproute2 and
# kmod; about 100 MiB, rebuilt only when its recipe below changes). The
# kernel comes from apt like the kernel matrix's, cached in $KERNEL_CACHE
# (shared with test/kernels/run.sh). Each run adds a small second cpio
# archive (the package, the guest script, the guest's test unit) to the
# cached one: the kernel unpacks both.
#
# Exit status 0 when the guest printed PASS; output ends with the guest's
# verdict and, on failure, what it logged.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${SYSTEMD_CACHE:-/var/cache/xdpguard-systemd}
KCACHE=${KERNEL_CACHE:-/var/cache/xdpguard-kernels}
SERIES=${SYSTEMD_KERNEL_SERIES:-6.12}
SUITE=${SYSTEMD_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
# The mirror apt already uses (deb822 sources first, then sources.list).
mirror() {
	local m
	m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
	echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${DEBIAN_MIRROR:-$(mirror)}
TIMEOUT=${SYSTEMD_GUEST_TIMEOUT:-420}

for tool in qemu-system-x86_64 cpio; do
	command -v "$tool" >/dev/null || { echo "systemd-guest: $tool is missing (make deps installs it)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/xdpguard-systemd.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$CACHE" "$KCACHE"

# The newest cloud kernel of a series known to apt (as test/kernels/run.sh).
package_for() {
	apt-cache search --names-only "^linux-image-${1//./\\.}[.+-].*-cloud-amd64-unsigned\$" |
		awk '{print $1}' | sort -V | tail -1
}
kernel_dir() {
	local pkg dir
	pkg=$(package_for "$SERIES")
	[ -n "$pkg" ] || { apt-get update -qq >&2; pkg=$(package_for "$SERIES"); }
	[ -n "$pkg" ] || { echo "systemd-guest: no cloud kernel of series $SERIES known to apt" >&2; return 1; }
	dir=$KCACHE/$pkg
	if ! ls "$dir"/boot/vmlinuz-* >/dev/null 2>&1; then
		mkdir -p "$dir"
		(cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
			{ apt-get update -qq >&2 && pkg=$(package_for "$SERIES") && dir=$KCACHE/$pkg && mkdir -p "$dir" &&
				(cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); }
		(cd "$dir" && dpkg-deb -x ./*.deb . && rm -f ./*.deb)
	fi
	echo "$dir"
}

# The root filesystem: Debian minbase with systemd as /sbin/init, trimmed,
# set up to boot straight to multi-user.target with nothing to wait for.
# Any change to this function makes a new cache entry.
build_rootfs() {
	local dir=$1
	debootstrap --variant=minbase --include=systemd,systemd-sysv,iproute2,kmod "$SUITE" "$dir" "$MIRROR" >&2
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
		"$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/* "$dir"/usr/share/info/*
	# Not a first boot (no systemd-firstboot prompt on the console).
	echo 0123456789abcdef0123456789abcdef >"$dir"/etc/machine-id
	echo xdpguard-guest >"$dir"/etc/hostname
	ln -sf /lib/systemd/system/multi-user.target "$dir"/etc/systemd/system/default.target
	# Nothing the test needs, and each costs boot time under emulation.
	local u
	for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
		systemd-logind.service getty.target serial-getty@ttyS0.service console-getty.service \
		systemd-timesyncd.service systemd-networkd.service systemd-resolved.service \
		systemd-journal-flush.service systemd-update-utmp.service systemd-tmpfiles-clean.timer; do
		ln -sf /dev/null "$dir/etc/systemd/system/$u"
	done
	# The initramfs is the root: systemd runs /sbin/init from it.
	ln -sf /sbin/init "$dir"/init
}

recipe=$( { declare -f build_rootfs; echo "$SUITE $MIRROR"; } | sha256sum | cut -c1-16)
rootfs_cpio=$CACHE/rootfs-$SUITE-$recipe.cpio
start=$(date +%s)
if [ ! -s "$rootfs_cpio" ]; then
	command -v debootstrap >/dev/null || "$ROOT"/scripts/apt-deps.sh debootstrap >&2
	exec 9>"$CACHE/lock"
	flock 9
	if [ ! -s "$rootfs_cpio" ]; then
		echo "systemd-guest: building the root filesystem ($SUITE from $MIRROR) into $CACHE" >&2
		tmp=$CACHE/build
		rm -rf "$tmp" # what a failed build left
		build_rootfs "$tmp/root"
		(cd "$tmp/root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) >"$tmp/rootfs.cpio"
		rm -f "$CACHE"/rootfs-"$SUITE"-*.cpio # older recipes'
		mv "$tmp/rootfs.cpio" "$rootfs_cpio"
		rm -rf "$tmp"
	fi
	exec 9>&-
fi

kdir=$(kernel_dir)
image=$(ls "$kdir"/boot/vmlinuz-* | head -1)
kver=${image##*/vmlinuz-}

# The package under test.
deb=${XDPGUARD_DEB:-}
if [ -z "$deb" ]; then
	make -s deb >&2
	deb=$(ls "$ROOT"/dist/xdpguard_*_amd64.deb)
fi

# This run's files: a second archive the kernel unpacks over the first.
o=$WORK/overlay
# Paths as the root filesystem has them: an entry whose type differs from
# the first archive's replaces it (a directory lib/ would replace the
# merged-/usr symlink, and with it the dynamic loader's libraries).
mkdir -p "$o/xdpguard-test" "$o/etc/systemd/system/multi-user.target.wants" "$o/usr/lib/modules/$kver/kernel/drivers/net"
cp "$deb" "$o/xdpguard-test/xdpguard.deb"
install -m 0755 "${SYSTEMD_GUEST_SCRIPT:-test/systemd/guest.sh}" "$o/xdpguard-test/guest.sh"
cp "$kdir/lib/modules/$kver/kernel/drivers/net/veth.ko"* "$o/usr/lib/modules/$kver/kernel/drivers/net/"
cat >"$o/etc/systemd/system/xdpguard-guest-test.service" <<'EOF'
[Unit]
Description=xdpguard under systemd (test/systemd/guest.sh)
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/xdpguard-test/guest.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
EOF
ln -s ../xdpguard-guest-test.service "$o/etc/systemd/system/multi-user.target.wants/xdpguard-guest-test.service"
(cd "$o" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) >"$WORK/overlay.cpio"
cat "$rootfs_cpio" "$WORK/overlay.cpio" >"$WORK/initrd.cpio"

echo "systemd-guest: $(basename "$kdir"), $SUITE root filesystem, $(basename "$deb")"
log=$WORK/console.log
booted=$(date +%s)
# One vCPU, as the kernel matrix (TCG and two vCPUs once oopsed at boot).
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 2048 -nographic -no-reboot -nic none \
	-kernel "$image" -initrd "$WORK/initrd.cpio" \
	-append "console=ttyS0 panic=-1 rdinit=/sbin/init quiet systemd.show_status=error systemd.firstboot=off" \
	>"$log" 2>&1 || true
end=$(date +%s)
tr -d '\r' <"$log" >"$log.txt"
grep -a 'xdpguard-systemd:' "$log.txt" || true
if grep -aq 'xdpguard-systemd: PASS' "$log.txt"; then
	echo "systemd-guest: ok (guest $((end - booted))s, total $((end - start))s)"
	exit 0
fi
echo "systemd-guest: FAILED after $((end - booted))s in the guest; the console's last lines:" >&2
grep -qa 'xdpguard-systemd: ' "$log.txt" || tail -60 "$log.txt" >&2
grep -a -A200 'xdpguard-systemd: FAIL' "$log.txt" | head -200 >&2 || true
exit 1
