#!/usr/bin/env bash
# The kernel matrix: boot Debian's 6.1 and 6.12 cloud kernels under qemu
# and run pkg/datapath's tests (the verifier, BPF_PROG_RUN tables, the
# differential tests) inside each. The host's kernel runs them in make test.
#
# Kernels come from apt (apt-get download, the newest of each series), are
# cached in $KERNEL_CACHE, and are never installed. qemu runs in TCG
# (emulation): nested KVM on cloud VMs often refuses the CPU models a
# kernel needs, and TCG is fast enough for these tests (about a minute each).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${KERNEL_CACHE:-/var/cache/xdpguard-kernels}
SERIES=${KERNEL_SERIES:-"6.1 6.12"}
# KERNEL_ONLY=datapath or loader runs one package's tests in the guests.
WORK=$(mktemp -d /tmp/xdpguard-kernels.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The newest cloud kernel of a series known to apt, e.g. 6.1 ->
# linux-image-6.1.0-56-cloud-amd64-unsigned.
package_for() {
	apt-cache search --names-only "^linux-image-${1//./\\.}[.+-].*-cloud-amd64-unsigned\$" |
		awk '{print $1}' | sort -V | tail -1
}

kernel_image() {
	local pkg=$1 dir=$CACHE/$1
	if ! ls "$dir"/boot/vmlinuz-* >/dev/null 2>&1; then
		mkdir -p "$dir"
		# Stale package lists may name a version the mirror dropped:
		# refresh them once and look again.
		(cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
			{ apt-get update -qq >&2 && pkg=$(package_for "$2") && dir=$CACHE/$pkg && mkdir -p "$dir" &&
				(cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); }
		(cd "$dir" && dpkg-deb -x ./*.deb . && rm -f ./*.deb)
	fi
	ls "$dir"/boot/vmlinuz-*
}

# The initramfs: init, the test binaries and the files the tests read.
mkdir -p "$WORK/root/src/pkg/datapath" "$WORK/root/src/pkg/loader" "$WORK/root/src/bpf" "$WORK/root/src/docs" "$WORK/root/bin"
CGO_ENABLED=0 go build -o "$WORK/root/init" ./test/kernels/init
CGO_ENABLED=0 go test -c -o "$WORK/root/src/pkg/datapath/datapath.test" ./pkg/datapath
CGO_ENABLED=0 go test -c -o "$WORK/root/src/pkg/loader/loader.test" ./pkg/loader
cp bpf/*.h "$WORK/root/src/bpf/"
cp docs/ARCHITECTURE.md "$WORK/root/src/docs/"
cp -r pkg/datapath/testdata "$WORK/root/src/pkg/datapath/"
# The libxdp dispatcher test (pkg/loader): Debian's xdp-filter and
# xdp-loader with their libraries and BPF objects, ip for the lab, and the
# program xdp-loader loads beside xdpguard. (freplace, which libxdp's
# dispatcher needs, is refused on hosts with lockdown or a BPF LSM; these
# guests boot without.)
clang-19 -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c pkg/loader/testdata/counter.c -o "$WORK/root/src/pkg/loader/counter.o"
for bin in /usr/sbin/xdp-filter /usr/sbin/xdp-loader "$(command -v ip)"; do
	mkdir -p "$WORK/root$(dirname "$bin")"
	cp "$bin" "$WORK/root$bin"
	for lib in $(ldd "$bin" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		mkdir -p "$WORK/root$(dirname "$lib")"
		cp -L "$lib" "$WORK/root$lib"
	done
done
BPF_OBJS=/usr/lib/$(uname -m)-linux-gnu/bpf
mkdir -p "$WORK/root$BPF_OBJS"
cp "$BPF_OBJS"/xdp-dispatcher.o "$BPF_OBJS"/xdpfilt_*.o "$WORK/root$BPF_OBJS/"

# The modules each kernel's guest loads, in dependency order (numbered:
# init loads them sorted): veth for the lab, bonding and 8021q for
# TestBondAndVLANPlacement, clsact and cls_bpf for tc mode where there is
# no tcx (6.1).
add_modules() {
	local dir=$1 ko n=0 m rel
	for m in veth tls bonding llc stp garp mrp 8021q sch_ingress cls_bpf; do
		ko=$(find "$dir"/lib/modules -name "$m.ko*" | head -1)
		[ -n "$ko" ] || { echo "kernel-matrix: no $m module in $dir" >&2; return 1; }
		rel=${ko#"$dir"/lib/modules/}
		rel=${rel%%/*}
		mkdir -p "$WORK/root/modules/$rel"
		n=$((n + 1))
		cp "$ko" "$WORK/root/modules/$rel/$n-$(basename "$ko")"
	done
}

# boot SERIES IMAGE: one guest, its console in $WORK/SERIES.log.
boot() {
	local series=$1 image=$2 log=$WORK/$1.log
	# One vCPU: with two, TCG once let a kernel hit its own text-patching
	# int3 during boot (an Oops in sched_clock_cpu before init ran). A boot
	# that dies before init starts says nothing about xdpguard, so it is
	# tried once more; a failure after init started is never retried.
	for attempt in 1 2; do
		# 30 minutes: side by side on a busy host, a guest may get half a
		# core or less (a quiet one takes about 6).
		timeout 1800 qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 2048 -nographic -no-reboot \
			-kernel "$image" -initrd "$WORK/initrd.cpio" \
			-append "console=ttyS0 panic=-1 rdinit=/init quiet ${KERNEL_ONLY:+xdpguard.only=$KERNEL_ONLY}" >"$log" 2>&1 || true
		grep -q 'xdpguard-kernel-matrix: kernel' "$log" && break
		echo "kernel-matrix: $series did not reach init (attempt $attempt); its last lines:" >&2
		tail -15 "$log" >&2
	done
}

# The guests run side by side, one vCPU each: the host's tests are done by
# now, and a busier host only makes them share a core.
failed=()
booted=()
images=()
for series in $SERIES; do
	pkg=$(package_for "$series")
	if [ -z "$pkg" ]; then
		echo "kernel-matrix: no cloud kernel of series $series known to apt (run apt-get update)" >&2
		failed+=("$series")
		continue
	fi
	image=$(kernel_image "$pkg" "$series")
	add_modules "$(dirname "$(dirname "$image")")"
	images+=("$series=$image")
	echo "kernel-matrix: $pkg"
done
(cd "$WORK/root" && find . | cpio -o -H newc --quiet) >"$WORK/initrd.cpio"
for si in "${images[@]}"; do
	boot "${si%%=*}" "${si#*=}" &
	booted+=("${si%%=*}")
done
wait
for series in "${booted[@]}"; do
	log=$WORK/$series.log
	grep -E '^(--- FAIL|xdpguard-kernel-matrix:)' "$log" | sed "s/^/[$series] /" || true
	if ! grep -q '^xdpguard-kernel-matrix: exit 0' "$log"; then
		echo "kernel-matrix: $series FAILED; what failed in the guest:" >&2
		# Failed tests with their messages, the kernel's last words, and
		# the init's own lines.
		# (|| true: head closing the pipe early must not end the script
		# under pipefail before the other kernels are judged.)
		{ grep -E -e '--- FAIL|^\s+\S+_test\.go:[0-9]+:|^\s{8}|panic|Kernel panic|xdpguard-kernel-matrix:' "$log" | head -200 >&2; } || true
		grep -qE -e 'xdpguard-kernel-matrix: kernel' "$log" || tail -40 "$log" >&2
		failed+=("$series")
	else
		echo "kernel-matrix: $series ok ($(grep -c '^--- PASS' "$log") tests passed)"
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "kernel-matrix: failed on ${failed[*]}" >&2
	exit 1
fi
