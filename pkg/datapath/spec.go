package datapath

import "github.com/cilium/ebpf"

// ProgramName is the name in Spec's collection of the program h loads.
func (h Hook) ProgramName() string {
	if h == HookTC {
		return xdpguardProgXdpguardTc
	}
	return xdpguardProgXdpguard
}

// Spec parses the embedded program afresh, for loading it again beside a
// generation in force against other maps (pkg/explain). Load is how a
// generation is built; Spec is for those who bring every map themselves.
func Spec() (*ebpf.CollectionSpec, error) { return loadXdpguard() }
