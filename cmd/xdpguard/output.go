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

// checkInterfaceNames refuses an --iface value that is not an interface
// name (it would become a path under the pin root), before anything is
// opened or mounted.
func checkInterfaceNames(ifaces []string) error {
	for _, i := range ifaces {
		if err := loader.CheckInterfaceName(i); err != nil {
			return fmt.Errorf("--iface: %w", err)
		}
	}
	return nil
}

// pinnedInterfaces resolves the pin root and lists the interfaces with
// xdpguard pins in this network namespace.
func pinnedInterfaces(cmd *cobra.Command) (root string, ifaces []string, err error) {
	if root, err = loader.ResolvePinRoot(bpffsFlag(cmd), false); err != nil {
		return "", nil, err
	}
	ifaces, err = loader.Interfaces(root)
	return root, ifaces, err
}
