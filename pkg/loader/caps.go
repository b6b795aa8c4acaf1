package loader

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The capabilities attaching and reloading need: CAP_BPF and CAP_NET_ADMIN
// to load an XDP program and attach it, CAP_PERFMON because the verifier
// refuses the program's pointer comparisons without it.
var neededCaps = []struct {
	bit  uint
	name string
}{{39, "CAP_BPF"}, {12, "CAP_NET_ADMIN"}, {38, "CAP_PERFMON"}}

// missingCapabilities lists the capabilities this process lacks to attach
// or reload (nil when it has them, or when they cannot be read).
func missingCapabilities() []string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil
		}
		var missing []string
		for _, c := range neededCaps {
			if eff&(1<<c.bit) == 0 {
				missing = append(missing, c.name)
			}
		}
		return missing
	}
	return nil
}

// CheckCapabilities fails, before anything touches the kernel, when the
// process cannot attach or reload.
func CheckCapabilities() error {
	if m := missingCapabilities(); len(m) > 0 {
		return fmt.Errorf("missing capabilities %s: xdpguard needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON "+
			"(run as root, or grant them as deploy/systemd/xdpguard.service does)", strings.Join(m, ", "))
	}
	return nil
}
