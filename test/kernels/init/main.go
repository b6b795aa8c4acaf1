// Command init is PID 1 of the kernel-matrix guests (test/kernels/run.sh):
// it mounts what the BPF tests need, runs the pkg/datapath test binary from
// the source tree copied into the initramfs, prints its result on the
// serial console and powers the guest off.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

func main() {
	for _, m := range []struct{ src, dst, typ string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
		{"bpffs", "/sys/fs/bpf", "bpf"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := syscall.Mount(m.src, m.dst, m.typ, 0, ""); err != nil {
			fmt.Println("xdpguard-kernel-matrix: mount", m.dst, err)
		}
	}
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Println("xdpguard-kernel-matrix: kernel", strings.TrimSpace(string(release)))
	code := 0
	// Every limiter test runs on the test build's clock, so none depends on
	// how slowly the emulated kernel runs.
	cmd := exec.Command("./datapath.test", "-test.v", "-test.count=1")
	cmd.Dir = "/src/pkg/datapath" // tests read ../../bpf and testdata/
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// CI=true: a privileged test fails rather than skips. Smaller
	// differential and model runs: the guest's CPU is emulated.
	cmd.Env = append(os.Environ(), "CI=true", "XDPGUARD_DIFF_SCALE_N=50000", "XDPGUARD_MODEL_N=30000", "PATH=/bin")
	if err := cmd.Run(); err != nil {
		fmt.Println("xdpguard-kernel-matrix: tests:", err)
		code = 1
	}
	fmt.Printf("xdpguard-kernel-matrix: exit %d\n", code)
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
