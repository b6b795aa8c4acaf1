package datapath

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// The schema version lives in C (for the record) and Go (for the check);
// they must not drift.
func TestSchemaVersion(t *testing.T) {
	src, err := os.ReadFile("../../bpf/types.h")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`#define XDPG_SCHEMA_VERSION (\d+)`).FindSubmatch(src)
	if m == nil {
		t.Fatal("XDPG_SCHEMA_VERSION not found in bpf/types.h")
	}
	if v, _ := strconv.Atoi(string(m[1])); v != SchemaVersion {
		t.Fatalf("bpf/types.h says schema %d, Go says %d", v, SchemaVersion)
	}
}

// Every reason has a label, and labels are unique within a verdict (the
// metric name says pass or drop).
func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range AllReasons() {
		name := r.Name()
		if name == "" || name == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
		key := strconv.FormatBool(r.Dropped()) + name
		if seen[key] {
			t.Errorf("label %q used twice with the same verdict", name)
		}
		seen[key] = true
	}
	if !DropPortNotAllowed.Dropped() || PassSYNAllowed.Dropped() || !DropInvalidFlags.Dropped() {
		t.Error("verdict split between passes and drops is wrong")
	}
}
