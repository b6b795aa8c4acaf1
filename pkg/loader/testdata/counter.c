// SPDX-License-Identifier: GPL-2.0
// A plain XDP program that counts the frames it sees and passes them: the
// "other tool" TestJoinsLibxdpDispatcher loads with xdp-loader (libxdp's
// default priority, 50).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} xdpg_counted SEC(".maps");

SEC("xdp")
int xdpg_counter(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&xdpg_counted, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
