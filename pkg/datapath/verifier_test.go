package datapath_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/pkg/datapath"
)

// The program must stay far from the verifier's 1M-instruction limit; a
// jump here means a change made some path explode (unrolled loops, state
// pruning lost). Raise the budget only knowingly. The figure
// docs/ARCHITECTURE.md gives is this test's, within a quarter (kernels
// verify differently: 6.1 and 6.12 count less than 6.18).
func TestVerifiedInstructionBudget(t *testing.T) {
	// The IPv6 extension-header loop once cost 314k; gcra_take inlined at
	// each of its callers once cost 125k.
	const budget = 60000
	var everyOption int
	for name, doc := range map[string]string{
		"basic":        basePolicy,
		"every option": "mode: monitor\n" + diffPolicy + "ratelimit:\n  syn: {rate: 5, burst: 5, ban: 60s}\n  syn_total: {rate: 5, burst: 5}\n",
	} {
		for _, h := range hooks {
			d := loadHook(t, mustPolicy(t, doc), h)
			info, err := d.Program.Info()
			if err != nil {
				t.Fatal(err)
			}
			n, ok := info.VerifiedInstructions()
			if !ok {
				t.Fatal("kernel does not report verified instructions")
			}
			t.Logf("%s, %s: %d instructions verified", name, h, n)
			// The tc build verifies two to three times the XDP one:
			// the skb's length is a context load the verifier cannot
			// relate to the packet pointers, and the header pull
			// doubles the paths into the judge (every option: 141k on
			// 6.18 with the SYN proxy's and the trace's hooks).
			limit := budget
			if h == datapath.HookTC {
				limit = 3 * budget
			}
			if int(n) > limit {
				t.Errorf("%s, %s: %d verified instructions, budget %d", name, h, n, limit)
			}
			if name == "every option" && h == datapath.HookXDP {
				everyOption = int(n)
			}
		}
	}
	doc, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(testutil.DocBlock(t, "../../docs/ARCHITECTURE.md", "verified")), ",", ""))
	if err != nil {
		t.Fatalf("docs/ARCHITECTURE.md's verified-instruction figure: %v", err)
	}
	if everyOption < doc*3/4 || everyOption > doc*5/4 {
		t.Errorf("docs/ARCHITECTURE.md says %d instructions verified with every option, this kernel verified %d: update the figure", doc, everyOption)
	}
}

// ARCHITECTURE.md lists every map the program pins, with its type, and
// nothing the program does not pin: a map added to maps.h without its line
// there fails here.
func TestArchitectureListsEveryPinnedMap(t *testing.T) {
	listed := map[string]string{}
	for _, line := range strings.Split(testutil.DocBlock(t, "../../docs/ARCHITECTURE.md", "pins"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[0], "xdpg_") {
			listed[f[0]] = f[1]
		}
	}
	spec, err := datapath.Spec()
	if err != nil {
		t.Fatal(err)
	}
	cType := map[ebpf.MapType]string{
		ebpf.Array: "ARRAY", ebpf.PerCPUArray: "PERCPU_ARRAY", ebpf.Hash: "HASH", ebpf.LRUHash: "LRU_HASH", ebpf.RingBuf: "RINGBUF", ebpf.LPMTrie: "LPM_TRIE",
	}
	for _, name := range datapath.PinnedMaps() {
		typ, ok := listed[name]
		if !ok {
			t.Errorf("%s is pinned but docs/ARCHITECTURE.md does not list it", name)
			continue
		}
		ms := spec.Maps[name]
		if ms == nil {
			ms = spec.Maps[".data."+name] // a global pinned as a map (the trace entry)
		}
		if want := cType[ms.Type]; !strings.HasPrefix(typ, want+"[") && typ != want {
			t.Errorf("docs/ARCHITECTURE.md says %s is %s, the program makes a %s", name, typ, want)
		}
		delete(listed, name)
	}
	for name := range listed {
		t.Errorf("docs/ARCHITECTURE.md lists %s, which the program does not pin", name)
	}
}
