// Command init is PID 1 of the kernel-matrix guests (test/kernels/run.sh):
// it mounts what the BPF tests need, loads veth, bonding and 8021q, runs the pkg/datapath test
// binary and pkg/loader's libxdp dispatcher and bond/VLAN tests from the source tree
// copied into the initramfs, prints their result on the serial console and
// powers the guest off.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	for _, m := range []struct{ src, dst, typ string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
		{"bpffs", "/sys/fs/bpf", "bpf"}, {"tmpfs", "/tmp", "tmpfs"}, {"tmpfs", "/run", "tmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := syscall.Mount(m.src, m.dst, m.typ, 0, ""); err != nil {
			fmt.Println("xdpguard-kernel-matrix: mount", m.dst, err)
		}
	}
	_ = os.MkdirAll("/var", 0o755)
	_ = os.Symlink("/run", "/var/run") // ip netns keeps its namespaces in /var/run/netns
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	rel := strings.TrimSpace(string(release))
	fmt.Println("xdpguard-kernel-matrix: kernel", rel)
	if err := loadModules(filepath.Join("/modules", rel)); err != nil {
		fmt.Println("xdpguard-kernel-matrix: modules:", err)
	}
	code := 0
	// CI=true: a privileged test fails rather than skips;
	// XDPGUARD_KERNEL_MATRIX: so does the dispatcher test, which skips only
	// on hosts that refuse freplace. Smaller differential and model runs:
	// the guest's CPU is emulated. Every limiter test runs on the test
	// build's clock, so none depends on how slowly the emulated kernel runs.
	env := append(os.Environ(), "CI=true", "XDPGUARD_KERNEL_MATRIX=1", "XDPGUARD_DIFF_N=8000", "XDPGUARD_DIFF_SCALE_N=50000", "XDPGUARD_MODEL_N=15000", "XDPGUARD_RATES_SHORT=1",
		"PATH=/bin:/usr/sbin:/usr/bin:/sbin", "XDPGUARD_COUNTER_OBJ=/src/pkg/loader/counter.o")
	// xdpguard.only=NAME on the kernel command line (run.sh's
	// KERNEL_ONLY) runs one package's tests: for working on one.
	cmdline, _ := os.ReadFile("/proc/cmdline")
	for _, t := range []struct{ name, dir, bin, run string }{
		{"datapath", "/src/pkg/datapath", "./datapath.test", ""}, // tests read ../../bpf and testdata/
		{"loader", "/src/pkg/loader", "./loader.test", "Dispatcher|BondAndVLAN"},
	} {
		if only := strings.Fields(string(cmdline)); !keep(only, t.name) {
			continue
		}
		args := []string{"-test.v", "-test.count=1"}
		if t.run != "" {
			args = append(args, "-test.run", t.run)
		}
		cmd := exec.Command(t.bin, args...)
		cmd.Dir = t.dir
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = env
		if err := cmd.Run(); err != nil {
			fmt.Println("xdpguard-kernel-matrix: tests:", t.bin, err)
			code = 1
		}
	}
	fmt.Printf("xdpguard-kernel-matrix: exit %d\n", code)
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

func keep(cmdline []string, name string) bool {
	for _, f := range cmdline {
		if v, ok := strings.CutPrefix(f, "xdpguard.only="); ok {
			return v == name
		}
	}
	return true
}

// loadModules loads every module in dir in name order (run.sh numbers them
// by dependency; compressed ones the kernel decompresses itself).
func loadModules(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		flags := 0
		if !strings.HasSuffix(e.Name(), ".ko") {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
		err = unix.FinitModule(int(f.Fd()), "", flags)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return nil
}
