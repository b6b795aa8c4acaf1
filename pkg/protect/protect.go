// Package protect finds the addresses a ban must never hit unless the
// operator says so: the peers of this host's SSH sessions, its default
// gateways and its DNS resolvers. Anyone who can spoof can make a SYN flood
// carry these addresses; banning them would cut the operator off, or the
// host from its network. The daemon writes what Discover finds into the data
// path's xdpg_protected (maps.Set.SetProtected) and keeps it current.
package protect

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// Sources maps each protected address to why it is protected.
type Sources map[netip.Addr]datapath.Protection

func (s Sources) add(a netip.Addr, why datapath.Protection) {
	if a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() {
		s[a.Unmap()] |= why
	}
}

// Equal reports whether both hold the same addresses for the same reasons.
func (s Sources) Equal(o Sources) bool {
	if len(s) != len(o) {
		return false
	}
	for a, w := range s {
		if o[a] != w {
			return false
		}
	}
	return true
}

// Host is where Discover looks: the files and the /proc of this host (fields
// for tests).
type Host struct {
	Proc        string   // /proc
	ResolvConfs []string // resolv.conf files, the systemd-resolved upstream one too
	// SSHConnection is $SSH_CONNECTION of the shell that started the
	// daemon ("client-ip client-port server-ip server-port"), if any.
	SSHConnection string
}

// ThisHost is Host for the running system.
func ThisHost(sshConnection string) Host {
	return Host{Proc: "/proc", ResolvConfs: []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}, SSHConnection: sshConnection}
}

// Discover lists the protected addresses of this network namespace. Each
// source that cannot be read is reported in err; what could be read is
// returned anyway.
func (h Host) Discover() (Sources, error) {
	out := Sources{}
	var errs []error
	if err := h.sshPeers(out); err != nil {
		errs = append(errs, fmt.Errorf("SSH sessions: %w", err))
	}
	if err := gateways(out); err != nil {
		errs = append(errs, fmt.Errorf("default gateways: %w", err))
	}
	for _, f := range h.ResolvConfs {
		if err := resolvers(f, out); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("resolvers: %w", err))
		}
	}
	if f := strings.Fields(h.SSHConnection); len(f) == 4 {
		if a, err := netip.ParseAddr(f[0]); err == nil {
			out.add(a, datapath.ProtectSSH)
		}
	}
	return out, errors.Join(errs...)
}

const tcpEstablished = 1 // TCP_ESTABLISHED

// sshPeers adds the peers of established TCP connections held by an SSH
// server process (sshd, or OpenSSH 9.8's sshd-session): the sockets
// sock_diag lists in this namespace whose inode one of those processes has
// open.
func (h Host) sshPeers(out Sources) error {
	inodes, err := h.sshdSockets()
	if err != nil || len(inodes) == 0 {
		return err
	}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(family)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("list TCP sockets (sock_diag): %w", err)
		}
		for _, s := range socks {
			if s.State == tcpEstablished && inodes[s.INode] {
				if a, ok := netip.AddrFromSlice(s.ID.Destination); ok {
					out.add(a, datapath.ProtectSSH)
				}
			}
		}
	}
	return nil
}

// sshdSockets is the set of socket inodes open in SSH server processes.
func (h Host) sshdSockets() (map[uint32]bool, error) {
	procs, err := os.ReadDir(h.Proc)
	if err != nil {
		return nil, err
	}
	inodes := map[uint32]bool{}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(h.Proc, p.Name(), "comm"))
		if err != nil || !isSSHServer(strings.TrimSpace(string(comm))) {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(h.Proc, p.Name(), "fd"))
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(h.Proc, p.Name(), "fd", fd.Name()))
			if err != nil {
				continue
			}
			if s, ok := strings.CutPrefix(target, "socket:["); ok {
				if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32); err == nil {
					inodes[uint32(n)] = true
				}
			}
		}
	}
	return inodes, nil
}

func isSSHServer(comm string) bool { return comm == "sshd" || comm == "sshd-session" }

// gateways adds the next hops of this namespace's default routes (IPv4 and
// IPv6, multipath included).
func gateways(out Sources) error {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			out.add(a, datapath.ProtectGateway)
		}
		for _, nh := range r.MultiPath {
			if a, ok := netip.AddrFromSlice(nh.Gw); ok {
				out.add(a, datapath.ProtectGateway)
			}
		}
	}
	return nil
}

// resolvers adds the nameserver lines of a resolv.conf.
func resolvers(path string, out Sources) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			// A scoped IPv6 address (fe80::1%eth0) is link-local: always
			// protected by the data path; the zone is dropped here.
			host, _, _ := strings.Cut(fields[1], "%")
			if a, err := netip.ParseAddr(host); err == nil {
				out.add(a, datapath.ProtectResolver)
			}
		}
	}
	return sc.Err()
}
