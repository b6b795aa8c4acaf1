// Package listening reads this network namespace's listening sockets
// (sock_diag): the TCP ports reachable from outside, for
// tcp.allow_listening, and every listening socket, for the audit.
package listening

import (
	"errors"
	"fmt"
	"net/netip"
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

// Socket is a listening socket: TCP in LISTEN, or UDP bound and not
// connected (a server's; a connected one is a client's).
type Socket struct {
	Proto string // "tcp" or "udp"
	Port  uint16
	// Addr is the bound address, unspecified for all addresses.
	Addr netip.Addr
	UID  uint32
}

// Sockets lists every listening socket of this network namespace, of any
// owner, loopback ones included (callers judge them), IPv4 and IPv6.
// tcpComplete and udpComplete say the list of that protocol is whole: a
// dump the kernel interrupts (sockets came and went during it) is retried,
// and reported incomplete if it keeps being interrupted, so that a caller
// never takes a missing socket for an absent one.
func Sockets() (socks []Socket, tcpComplete, udpComplete bool, err error) {
	for _, proto := range []string{"tcp", "udp"} {
		complete := true
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			got, whole, err := dump(proto, family)
			if err != nil {
				return nil, false, false, err
			}
			complete = complete && whole
			for _, s := range got {
				listening := s.State == tcpListen
				if proto == "udp" {
					listening = s.State == udpUnconnected && s.ID.DestinationPort == 0
				}
				if !listening {
					continue
				}
				a, _ := netip.AddrFromSlice(s.ID.Source)
				socks = append(socks, Socket{Proto: proto, Port: s.ID.SourcePort, Addr: a.Unmap(), UID: s.UID})
			}
		}
		if proto == "tcp" {
			tcpComplete = complete
		} else {
			udpComplete = complete
		}
	}
	return socks, tcpComplete, udpComplete, nil
}

// udpUnconnected is a UDP socket's state when bound but not connected
// (the kernel reports TCP_CLOSE).
const udpUnconnected = 7

// dump reads one protocol and family, retrying an interrupted dump.
func dump(proto string, family uint8) (socks []*netlink.Socket, whole bool, err error) {
	diag := netlink.SocketDiagTCP
	if proto == "udp" {
		diag = netlink.SocketDiagUDP
	}
	for attempt := 0; attempt < 3; attempt++ {
		socks, err = diag(family)
		if err == nil {
			return socks, true, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, false, fmt.Errorf("list %s sockets (sock_diag): %w", proto, err)
		}
	}
	return socks, false, nil
}
