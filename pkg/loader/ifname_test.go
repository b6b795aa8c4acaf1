package loader

import "testing"

func TestCheckInterfaceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"eth0": true, "veth-a.100": true, "enp0s31f6": true, "a": true, "123456789012345": true,
		"": false, ".": false, "..": false, "a/b": false, "../x": false, "eth0:1": false,
		"eth 0": false, "eth\t0": false, "eth0\x00": false, "1234567890123456": false,
	} {
		if err := CheckInterfaceName(name); (err == nil) != ok {
			t.Errorf("CheckInterfaceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
