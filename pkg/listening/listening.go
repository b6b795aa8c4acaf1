// Package listening finds the TCP ports on which this network namespace has
// listening sockets reachable from outside, for tcp.allow_listening.
package listening

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const tcpListen = 10 // TCP_LISTEN

// Ports lists, sorted and unique, the TCP ports with a listening socket
// owned by one of uids and bound to a non-loopback address (or to any
// address), IPv4 and IPv6. Loopback-only listeners cannot be reached from
// outside, so they open nothing; other users' listeners open nothing
// either, or any local user could open a port to the world.
func Ports(uids []uint32) ([]uint16, error) {
	var ports []uint16
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(family)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list TCP sockets (sock_diag): %w", err)
		}
		for _, s := range socks {
			if s.State != tcpListen || s.ID.Source.IsLoopback() || !slices.Contains(uids, s.UID) {
				continue
			}
			ports = append(ports, s.ID.SourcePort)
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}
