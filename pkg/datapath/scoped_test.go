package datapath_test

import (
	"testing"

	"github.com/xdpguard/xdpguard/pkg/datapath"
)

const scopedPolicy = `tcp:
  allow:
    - 22
    - port: 3306
      from: [172.16.0.0/12, "fd00::/8"]
    - ports: 30000-32767
      from: [10.0.0.0/8]
    - ports: 3300-3310
      from: [10.1.0.0/16]
`

func TestScopedRulesDataPath(t *testing.T) {
	d := load(t, mustPolicy(t, scopedPolicy))
	for _, tc := range []struct {
		src  string
		port uint16
		want datapath.Reason
	}{
		{"8.8.8.8", 22, datapath.PassSYNAllowed},          // open to all
		{"172.20.1.1", 3306, datapath.PassSYNAllowed},     // inside 172.16/12
		{"172.32.0.1", 3306, datapath.DropPortNotAllowed}, // just outside
		{"fd12::1", 3306, datapath.PassSYNAllowed},
		{"fe80::1", 3306, datapath.DropPortNotAllowed},
		{"10.9.9.9", 3306, datapath.DropPortNotAllowed},
		{"10.1.2.3", 3306, datapath.PassSYNAllowed},  // via 3300-3310 from 10.1/16
		{"10.1.2.3", 31000, datapath.PassSYNAllowed}, // union with the enclosing 10/8 rule
		{"10.1.2.3", 3311, datapath.DropPortNotAllowed},
		{"10.200.0.1", 32767, datapath.PassSYNAllowed},
		{"10.200.0.1", 3305, datapath.DropPortNotAllowed},
		{"11.0.0.1", 31000, datapath.DropPortNotAllowed},
		{"8.8.8.8", 8080, datapath.DropPortNotAllowed}, // no rule at all
	} {
		if _, got := run(t, d, srcFrame(tc.src, tc.port)); got != tc.want {
			t.Errorf("%s -> %d: %s, want %s", tc.src, tc.port, got.Name(), tc.want.Name())
		}
	}
}
