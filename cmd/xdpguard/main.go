// Command xdpguard enforces "only listed ports accept new connections" in
// XDP: TCP SYNs to other ports, and SYNs over per-source and per-port rates,
// are dropped before the kernel's network stack sees them.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		code, quiet := exitStatus(err)
		if !quiet {
			fmt.Fprintln(os.Stderr, "xdpguard:", err)
		}
		os.Exit(code)
	}
}
