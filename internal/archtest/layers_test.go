package archtest

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// The layers ARCHITECTURE.md draws are the imports: each package imports
// only packages on lower layers, and every package of the module is placed.
func TestLayers(t *testing.T) {
	layer := map[string]int{}
	for _, line := range strings.Split(testutil.DocBlock(t, "../../docs/ARCHITECTURE.md", "layers"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "layer" && f[0] != "tests") {
			continue
		}
		n, pkgs := -1, f[1:] // tests: anywhere, importing anything
		if f[0] == "layer" {
			n = int(f[1][0] - '0')
			pkgs = f[2:]
		}
		for _, p := range pkgs {
			layer[module+"/"+p] = n
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		l, ok := layer[pkg]
		if !ok {
			t.Errorf("ARCHITECTURE.md's layers do not place %s", pkg)
			continue
		}
		if l < 0 {
			continue
		}
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			if il, ok := layer[imp]; ok && il >= 0 && il >= l {
				t.Errorf("%s (layer %d) imports %s (layer %d): not a lower layer", pkg, l, imp, il)
			}
		}
	}
}
