package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/loader"
)

// checkOutput validates an --output value.
func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("--output: want text or json, got %q", o)
	}
	return nil
}

// writeJSON writes v indented, for --output json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// pinnedInterfaces resolves the pin root and lists the interfaces with
// xdpguard pins in this network namespace.
func pinnedInterfaces(cmd *cobra.Command) (root string, ifaces []string, err error) {
	if root, err = loader.ResolvePinRoot(bpffsFlag(cmd)); err != nil {
		return "", nil, err
	}
	ifaces, err = loader.Interfaces(root)
	return root, ifaces, err
}
