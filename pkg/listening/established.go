package listening

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const tcpEstablished = 1 // TCP_ESTABLISHED

// Conn is an established TCP connection to a local port.
type Conn struct {
	Local, Peer netip.AddrPort
}

// Established lists the established TCP connections (sock_diag) whose local
// port is port, IPv4 and IPv6: the sessions a policy must not cut.
func Established(port uint16) ([]Conn, error) {
	var out []Conn
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(family)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list TCP sockets (sock_diag): %w", err)
		}
		for _, s := range socks {
			if s.State != tcpEstablished || s.ID.SourcePort != port {
				continue
			}
			l, ok1 := netip.AddrFromSlice(s.ID.Source)
			p, ok2 := netip.AddrFromSlice(s.ID.Destination)
			if !ok1 || !ok2 || p.Unmap().IsLoopback() {
				continue
			}
			out = append(out, Conn{netip.AddrPortFrom(l.Unmap(), port), netip.AddrPortFrom(p.Unmap(), s.ID.DestinationPort)})
		}
	}
	return out, nil
}
