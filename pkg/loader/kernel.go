package loader

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// minKernel is the oldest kernel xdpguard runs on: the oldest the kernel
// matrix (test/kernels) verifies and tests the program on. Older kernels
// lack what it relies on or verify it differently.
const minKernel = "6.1"

// CheckKernel refuses a running kernel older than minKernel, naming both.
func CheckKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("read the kernel version: %w", err)
	}
	return checkKernelRelease(unix.ByteSliceToString(u.Release[:]))
}

func checkKernelRelease(release string) error {
	major, minor, ok := kernelVersion(release)
	if !ok {
		return nil // an unusual release string: let the verifier speak
	}
	wantMajor, wantMinor, _ := kernelVersion(minKernel)
	if major < wantMajor || (major == wantMajor && minor < wantMinor) {
		return fmt.Errorf("kernel %s is older than %s, the oldest xdpguard supports (tested on 6.1, 6.12 and 6.18); upgrade the kernel", release, minKernel)
	}
	return nil
}

// kernelVersion reads "6.12.117+deb12-cloud-amd64" as 6, 12.
func kernelVersion(release string) (major, minor int, ok bool) {
	fields := strings.SplitN(release, ".", 3)
	if len(fields) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(fields[0])
	end := strings.IndexFunc(fields[1], func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(fields[1])
	}
	minor, err2 := strconv.Atoi(fields[1][:end])
	return major, minor, err1 == nil && err2 == nil
}
