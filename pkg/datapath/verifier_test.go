package datapath_test

import (
	"testing"
)

// The program must stay far from the verifier's 1M-instruction limit; a
// jump here means a change made some path explode (unrolled loops, state
// pruning lost). Raise the budget only knowingly.
func TestVerifiedInstructionBudget(t *testing.T) {
	// About 33k today (6.18); the IPv6 extension-header loop once cost 314k.
	const budget = 60000
	for name, doc := range map[string]string{
		"basic":        basePolicy,
		"every option": "mode: monitor\n" + diffPolicy + "ratelimit:\n  syn: {rate: 5, burst: 5, ban: 60s}\n  syn_total: {rate: 5, burst: 5}\n",
	} {
		d := load(t, mustPolicy(t, doc))
		info, err := d.Program.Info()
		if err != nil {
			t.Fatal(err)
		}
		n, ok := info.VerifiedInstructions()
		if !ok {
			t.Fatal("kernel does not report verified instructions")
		}
		t.Logf("%s: %d instructions verified", name, n)
		if n > budget {
			t.Errorf("%s: %d verified instructions, budget %d", name, n, budget)
		}
	}
}
