// Package component is the xdpguard program built with -DXDPG_FIXED_LENGTH:
// it never changes a frame's length (the SYN proxy's bpf_xdp_adjust_tail is
// compiled out), so it can replace a stub of a libxdp dispatcher that does
// not change packet data either — those of libxdp before 1.5.5, which
// kernels since 6.13 (and 6.12.y) otherwise refuse. pkg/datapath loads it
// for a dispatcher slot when the policy has no syn_proxy.
package component

import "github.com/cilium/ebpf"

// Generated and committed like pkg/datapath's object (`make generate`).
//go:generate go tool bpf2go -target bpfel xdpguardComponent ../../../../bpf/xdpguard.c -- -I../../../../bpf -DXDPG_FIXED_LENGTH

// Spec is the fixed-length build of the program.
func Spec() (*ebpf.CollectionSpec, error) { return loadXdpguardComponent() }
