#!/bin/bash
# Runs inside the guest test/systemd/run.sh boots, as a oneshot unit of a
# systemd that is PID 1. Installs the package, starts xdpguard.service with
# the shipped /etc/default/xdpguard (only XDPGUARD_IFACES set) and checks
# what the unit promises. Prints "xdpguard-systemd: PASS" or
# "xdpguard-systemd: FAIL: why" (then the unit's status and journal) on the
# console, and powers the guest off. Every wait is for a condition, with a
# deadline generous for an emulated CPU.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
unit=xdpguard.service
cg=/sys/fs/cgroup/system.slice/$unit

say() { echo "xdpguard-systemd: $*"; }
finish() {
	sync
	systemctl poweroff --force --force
	exit "$1"
}
fail() {
	say "FAIL: $*"
	systemctl status "$unit" --no-pager -l 2>&1 | head -40
	journalctl -u "$unit" --no-pager -o cat 2>&1 | tail -60
	finish 1
}
# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds, or fail.
wait_for() {
	local secs=$1 what=$2 deadline=$(($(date +%s) + $1))
	shift 2
	until "$@"; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "$what (waited $secs s)"
		sleep 0.2
	done
}
prop() { systemctl show -p "$1" --value "$unit"; }
# GET http://127.0.0.1:9477$1 with bash's /dev/tcp (no curl in minbase).
http_get() {
	timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9477 && printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$0" >&3 && cat <&3' "$1" 2>/dev/null
}
# /readyz answers ok; a restart on the way fails at once (a restart loop
# would otherwise only time out).
ready() {
	[ "$(prop NRestarts)" = 0 ] || fail "$unit is restarting ($(prop NRestarts) restarts): a restart loop"
	http_get /readyz | grep -q '^ok'
}
# A SYN from the peer namespace to a port the default policy does not
# open: monitor mode lets it through (refused by the kernel), as an event.
syn_closed_port() { ip netns exec peer timeout 5 bash -c 'exec 3<>/dev/tcp/10.99.0.1/9' 2>/dev/null; true; }
event_logged() {
	syn_closed_port
	grep -q '"reason":"port_not_allowed".*"monitored":true' "$events" 2>/dev/null
}
# The filter is on xg0: an XDP program, or xdpguard's pinned tcx link (tc
# mode: auto's choice on a veth; a pinned tcx link is an attachment).
attached() { ip link show xg0 | grep -q 'prog/xdp' || [ -e /sys/fs/bpf/xdpguard/xg0/link ]; }
stable() {
	[ "$(prop ActiveState)" = active ] || fail "$unit is $(prop ActiveState)/$(prop SubState), not active ($1)"
	[ "$(prop NRestarts)" = 0 ] || fail "$unit restarted $(prop NRestarts) times ($1)"
}

say "PID 1 is $(readlink /proc/1/exe) ($(systemctl --version | head -1)), kernel $(uname -r)"
[ "$(readlink /proc/1/exe)" = /usr/lib/systemd/systemd ] || [ "$(readlink /proc/1/exe)" = /lib/systemd/systemd ] || fail "PID 1 is not systemd"

# An interface to filter: a veth pair, its peer in a namespace.
insmod /lib/modules/"$(uname -r)"/kernel/drivers/net/veth.ko* 2>/dev/null || modprobe veth || fail "no veth module"
ip netns add peer || fail "ip netns add"
ip link add xg0 type veth peer name xg1 netns peer &&
	ip addr add 10.99.0.1/24 dev xg0 && ip link set xg0 up &&
	ip -n peer addr add 10.99.0.2/24 dev xg1 && ip -n peer link set xg1 up && ip -n peer link set lo up ||
	fail "veth setup"
# The host-shared bpffs an operator mounts for `ip netns exec` daemons
# (README): it lives in the unit's RuntimeDirectory and must survive it.
mkdir -p /run/xdpguard/bpffs && mount -t bpf -o mode=0700 bpf /run/xdpguard/bpffs || fail "mount the shared bpffs"

dpkg -i /xdpguard-test/xdpguard.deb || fail "dpkg -i"
systemctl cat "$unit" >/dev/null || fail "systemd does not know $unit after install (no daemon-reload?)"
[ "$(systemctl is-enabled "$unit")" = disabled ] || fail "$unit is $(systemctl is-enabled "$unit") after install, want disabled"

# The shipped defaults, with only the interface set.
grep -q '^XDPGUARD_IFACES=$' /etc/default/xdpguard || fail "the shipped /etc/default/xdpguard sets XDPGUARD_IFACES"
sed -i 's/^XDPGUARD_IFACES=$/XDPGUARD_IFACES=xg0/' /etc/default/xdpguard
events=$(. /etc/default/xdpguard && echo "${XDPGUARD_EVENTS:-}")
[ -n "$events" ] || fail "the shipped /etc/default/xdpguard turns no drop events on (XDPGUARD_EVENTS)"
say "shipped defaults: events at $events"

systemctl start "$unit" || fail "systemctl start"
wait_for 180 "/readyz never answered ok" ready
pid=$(prop MainPID)
link=$(stat -c %i /sys/fs/bpf/xdpguard/xg0/link) || fail "no pinned link in /sys/fs/bpf/xdpguard/xg0"
attached || fail "no filter on xg0"
xdpguard status --iface xg0 >/dev/null || fail "xdpguard status: xg0 is not enforcing ($(xdpguard status --iface xg0 2>&1 | tr '\n' ' '))"
say "attached: $(xdpguard status --iface xg0 --output json | grep -o '"mode": *"[a-z]*"' | head -1)"
wait_for 60 "no drop event in $events" event_logged
stable "after the first event"
[ "$(prop MainPID)" = "$pid" ] || fail "the daemon was replaced (PID $pid, now $(prop MainPID))"
say "active, no restart, events written to $events: $(head -1 "$events")"
for d in /var/log/xdpguard /var/lib/xdpguard /run/xdpguard; do
	[ -d "$d" ] || fail "$d was not created"
done
max=$(cat "$cg/memory.max")
[ "$max" != max ] || fail "no memory limit on $unit"
say "memory: current $(($(cat "$cg/memory.current") >> 20)) MiB, peak $(($(cat "$cg/memory.peak" 2>/dev/null || echo 0) >> 20)) MiB, max $((max >> 20)) MiB"

# Reload: SIGHUP, the same process.
systemctl reload "$unit" || fail "systemctl reload"
wait_for 60 "the reload was not logged" sh -c "journalctl -u $unit -o cat | grep -q '\"trigger\":\"SIGHUP\"'"
stable "after reload"
[ "$(prop MainPID)" = "$pid" ] || fail "reload replaced the daemon"

# Upgrade (the same package again): postinst restarts the running daemon,
# which adopts the pinned filter.
dpkg -i /xdpguard-test/xdpguard.deb || fail "dpkg -i (upgrade)"
[ "$(prop MainPID)" != "$pid" ] || fail "the upgrade did not restart the daemon"
wait_for 180 "/readyz never answered ok after the upgrade" ready
stable "after upgrade"
[ "$(stat -c %i /sys/fs/bpf/xdpguard/xg0/link)" = "$link" ] || fail "the upgrade replaced the pinned link instead of adopting it"
journalctl -u "$unit" -o cat | grep -q '"adopted":true' || fail "the restarted daemon did not adopt the filter"
say "reload and upgrade: active, the filter adopted"

# Stop: the filter stays; the runtime directory (and the bpffs in it) too.
systemctl stop "$unit" || fail "systemctl stop"
attached || fail "stopping the unit removed the filter"
mountpoint -q /run/xdpguard/bpffs || fail "stopping the unit took /run/xdpguard/bpffs"

# Purge: the filter goes with the package.
dpkg --purge xdpguard || fail "dpkg --purge"
! attached || fail "the filter outlived the package"
[ ! -e /sys/fs/bpf/xdpguard/xg0 ] || fail "pins left in /sys/fs/bpf/xdpguard/xg0 after purge"
say "stop keeps the filter, purge removes it"
say PASS
finish 0
