package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/listening"
	"github.com/xdpguard/xdpguard/pkg/policy"
)

// checkSynProxy is check's judgement of syn_proxy rules against this host:
// refused where it cannot work (a kernel without the helpers; a proxied
// port no local socket listens on: the proxy answers for a local listener
// only, and a port forwarded elsewhere, a Kubernetes NodePort or a DNAT,
// has none), with notes on what run will change or what is lost.
func checkSynProxy(p *policy.Policy) (notes []string, err error) {
	if p.SynProxy == nil {
		return nil, nil
	}
	if err := datapath.CheckSynProxyKernel(); err != nil {
		return nil, err
	}
	socks, complete, _, err := listening.Sockets()
	if err != nil {
		return nil, fmt.Errorf("syn_proxy: %w", err)
	}
	listen := map[uint16]bool{}
	for _, s := range socks {
		if s.Proto == "tcp" && !s.Addr.IsLoopback() {
			listen[s.Port] = true
		}
	}
	var errs []error
	for _, mode := range []policy.SynProxyMode{policy.SynProxyAlways, policy.SynProxyAuto} {
		for _, r := range p.SynProxyPorts(mode) {
			var missing []string
			for port := uint32(r.First); port <= uint32(r.Last); port++ {
				if !listen[uint16(port)] {
					missing = append(missing, fmt.Sprint(port))
				}
			}
			if len(missing) == 0 || !complete {
				continue
			}
			if len(missing) > 8 {
				missing = append(missing[:8], fmt.Sprintf("and %d more", len(missing)-8))
			}
			hint := ""
			if os.Getenv("KUBERNETES_SERVICE_HOST") != "" || r.Last >= 30000 && r.First <= 32767 {
				hint = " (a Kubernetes NodePort or hostPort is forwarded to a pod, not listened on here: proxying it would answer SYNs the pod never sees)"
			}
			errs = append(errs, fmt.Errorf("syn_proxy: %s on port %s: no local socket listens there%s; "+
				"the proxy can only answer for a local listener (SYNs there pass to the kernel and are counted as no_listener)",
				mode, strings.Join(missing, ", "), hint))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h, err := datapath.ReadSynProxyHost("")
	if err != nil {
		return nil, err
	}
	if h.Syncookies != 2 {
		notes = append(notes, fmt.Sprintf("syn_proxy: run sets net.ipv4.tcp_syncookies %d -> 2 (the listener then accepts the proxy's cookies; every listener of the namespace answers with cookies)", h.Syncookies))
	}
	if h.Timestamps == 1 {
		notes = append(notes, "syn_proxy: run sets net.ipv4.tcp_timestamps 1 -> 2 (no per-connection offset, so window scale and SACK ride in the cookie's timestamp)")
	} else if h.Timestamps != 2 {
		notes = append(notes, h.Degraded()...)
	}
	return notes, nil
}
