// Package loader loads the xdpguard XDP program, attaches it to interfaces
// and switches policy generations.
//
// Life cycle, per interface (a Guard):
//
//   - Every state map (counters, limiter buckets, generation metadata) is
//     pinned by name in <pin root>/<interface>/, so it outlives the daemon.
//   - The policy is compiled into the program's .rodata. A policy change loads
//     a new program against the pinned maps and swaps it in with one
//     BPF_LINK_UPDATE: each packet sees the old or the new policy, never a mix,
//     and counters and limiter budgets carry over.
//   - The XDP link is pinned too, so the filter keeps enforcing when the
//     daemon exits or dies. A restarted daemon adopts the pins; Detach is the
//     only way to remove the filter.
//
// Minimum kernel: 5.12 (XDP bpf_link, BPF atomics for the limiter,
// bpf_ktime_get_coarse_ns needs 5.11). Tested on 6.18.
package loader
