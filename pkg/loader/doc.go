// Package loader puts xdpguard on interfaces and keeps it there: it
// attaches a compiled generation (pkg/datapath), adopts the filter already
// pinned for an interface, switches generations, detaches; it locks an
// interface's pin directory, checks the pins' schema, and checks the host
// (kernel, capabilities, bpffs) first.
//
// Life cycle, per interface (a Guard):
//
//   - Every state map (counters, limiter buckets, bans, generation record)
//     is pinned by name in <pin root>/<interface>/, so it outlives the
//     daemon.
//   - The policy is compiled into the program's .rodata. A policy change
//     loads a new program against the pinned maps (Prepare) and swaps it in
//     with one BPF_LINK_UPDATE (Switch): each packet sees the old or the new
//     policy, never a mix, and counters and limiter budgets carry over.
//   - The XDP link is pinned too, so the filter keeps enforcing when the
//     daemon exits or dies. A restarted daemon adopts the pins; Detach is
//     the only way to remove the filter.
//
// Minimum kernel: 6.1 (minKernel; the kernel matrix tests 6.1 and 6.12).
package loader
