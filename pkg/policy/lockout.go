package policy

import (
	"fmt"
	"net/netip"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"
)

// listeningUsers resolves tcp.listening_users (names or uids) to uids,
// root always included.
func (v *validator) listeningUsers(path string, items []any) []uint32 {
	uids := []uint32{0}
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", path, i)
		switch x := item.(type) {
		case uint64:
			if x > 1<<32-2 {
				v.fail(at, "uid %d is out of range", x)
				continue
			}
			uids = append(uids, uint32(x))
		case string:
			u, err := user.Lookup(x)
			if err != nil {
				v.fail(at, "no user %s on this host (%v); give a uid instead", short(x), err)
				continue
			}
			n, err := strconv.ParseUint(u.Uid, 10, 32)
			if err != nil {
				v.fail(at, "user %s has uid %q", short(x), u.Uid)
				continue
			}
			uids = append(uids, uint32(n))
		default:
			v.fail(at, "want a user name or uid, got %v", short(item))
		}
	}
	slices.Sort(uids)
	return slices.Compact(uids)
}

// InForce is the policy in force at now when ports have listening sockets:
// the timed rules that apply then, plus, under allow_listening, the
// listening ports. What the daemon compiles; what check and status judge.
func (p *Policy) InForce(now time.Time, listening []uint16) *Policy {
	return p.At(now).WithListening(listening)
}

// WithListening is the policy in force when ports have listening sockets:
// with allow_listening, those not in DenyPorts join AllowTCP. The result
// shares nothing mutable with p.
func (p *Policy) WithListening(ports []uint16) *Policy {
	q := *p
	q.scoped, q.digest = nil, nil // computed again for the copy
	q.AllowTCP = append([]PortRange(nil), p.AllowTCP...)
	if !p.AllowListening {
		return &q
	}
	for _, port := range ports {
		denied := false
		for _, d := range p.DenyPorts {
			denied = denied || (d.First <= port && port <= d.Last)
		}
		if !denied {
			q.AllowTCP = append(q.AllowTCP, PortRange{port, port})
		}
	}
	q.AllowTCP = mergeRanges(q.AllowTCP)
	return &q
}

// LockOut checks a policy against the SSH session that runs the command
// ($SSH_CONNECTION: "client-ip client-port server-ip server-port"). It
// returns an error when the policy would refuse that session's port to its
// client, so a typo cannot cut the operator off. An unset or malformed
// value checks nothing.
func (p *Policy) LockOut(sshConnection string) error {
	f := strings.Fields(sshConnection)
	if len(f) != 4 {
		return nil
	}
	client, err1 := netip.ParseAddr(f[0])
	port, err2 := strconv.ParseUint(f[3], 10, 16)
	if err1 != nil || err2 != nil {
		return nil
	}
	if p.Monitor {
		return nil
	}
	if inSorted(p.Deny, client) {
		return fmt.Errorf("sources.deny holds %s, the client of the SSH session running this command: "+
			"it would be cut off at once; remove it, or pass --force", client.Unmap())
	}
	if p.AllowsFrom(uint16(port), client) {
		return nil
	}
	return fmt.Errorf("this policy would refuse new connections to port %d from %s, the SSH session running this command "+
		"(established sessions survive, but you could not log in again); allow the port, or pass --force", port, client.Unmap())
}
