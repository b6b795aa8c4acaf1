package datapath

import "github.com/xdpguard/xdpguard/pkg/policy"

// LoadDetached loads pol's program with fresh, unpinned maps, attached
// nowhere: for BPF_PROG_RUN tests and benchmarks of the exact program that
// `run` attaches. Close it when done.
func LoadDetached(pol *policy.Policy) (*Generation, error) {
	return Load(pol, Options{})
}
