/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Live samples of judged packets for `xdpguard trace` and `xdpguard
 * preview`. While xdpg_trace's entry has until_ns set (the CLI writes it
 * straight into the pins), packets matching its filter are copied, headers
 * first, with their verdict into xdpg_trace_ring, within a budget like the
 * drop events'. When nothing runs, each packet pays one load and one test of
 * until_ns (trace_hook). The entry clears itself
 * once until_ns has passed, so a trace that dies leaves no cost behind. */
#ifndef XDPG_TRACE_H
#define XDPG_TRACE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"
#include "parsing.h"
#include "clock.h"

/* Uses struct verdict, gcra_take and generation: included by xdpguard.c
 * after them. */

/* The trace in progress: written by the CLI, its budget's tat and the
 * counters by the data path. A global in its own data section, so the test
 * of until_ns is a load from a fixed address and one branch: no lookup, no
 * NULL check. Go loads it with the pinned map xdpg_trace in place of the
 * section's (pkg/datapath, openTraceMap), shared by every generation. */
struct xdpg_trace_config xdpg_trace SEC(".data.xdpg_trace");

/* The samples (struct xdpg_trace_sample), read by the CLI that runs the
 * trace. Apart from xdpg_events, so a trace never steals the daemon's
 * drop events. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_trace_ring SEC(".maps");

/* The sample of one packet: reads the source, protocol and L4 offset again
 * (so that the caller's state stays as the verifier pruned it without a
 * trace), checks the filter, the expiry and the budget, then copies the
 * frame's first bytes. A global function, verified once. verdict packs
 * reason (bits 0-7), passed (bit 8) and the rule slot (bits 16-31). A frame
 * with no IPv4 or IPv6 header has no source to match: it is never sampled.
 * The ports are read after a fixed IPv6 header only: behind extension
 * headers a packet has port 0 here (shown, unless --port or a preview
 * needs its port; the CLI decodes every header from the copy). */
static __always_inline int trace_sample_frame(void *ctx, int tc, void *data, void *data_end, __u32 frame_len,
					      __u32 ifindex, __u32 verdict)
{
	struct xdpg_trace_config *t = &xdpg_trace;
	struct xdpg_trace_sample *s;
	struct l4_info l4_buf = {}, *l4 = &l4_buf;
	struct hdr_cursor c;
	__u16 dport = 0, eth_proto;
	__u8 flags = 0;
	__u8 *l4h, *ip;
	__u32 len;
	__u64 now;

	now = clock_coarse();
	if (now > t->until_ns) {
		/* Ended (or its CLI died): back to the one test per packet. */
		__sync_val_compare_and_swap(&t->until_ns, t->until_ns, 0);
		return 0;
	}
	c.off = 0;
	c.len = data_end - data;
	if (parse_eth(data, data_end, &c, &eth_proto) != XDPG_PARSE_OK)
		return 0;
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		if (!(ip = cursor_ptr(data, &c, 20, data_end)))
			return 0;
		l4->saddr[2] = bpf_htonl(0x0000ffff);
		__builtin_memcpy(&l4->saddr[3], ip + 12, 4);
		l4->proto = ip[9];
		l4->later_frag = ((((__u16)ip[6] << 8) | ip[7]) & 0x1fff) != 0;
		l4->l4_off = c.off + (ip[0] & 0x0f) * 4;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		if (!(ip = cursor_ptr(data, &c, 40, data_end)))
			return 0;
		l4->is_v6 = 1;
		__builtin_memcpy(l4->saddr, ip + 8, 16);
		l4->proto = ip[6];
		l4->l4_off = c.off + 40;
	} else {
		return 0;
	}
	for (int i = 0; i < 4; i++)
		if ((l4->saddr[i] & t->mask[i]) != t->addr[i])
			return 0;
	c.off = l4->l4_off;
	if (!l4->later_frag && (l4->proto == IPPROTO_TCP || l4->proto == IPPROTO_UDP) &&
	    (l4h = cursor_ptr(data, &c, 4, data_end))) {
		dport = ((__u16)l4h[2] << 8) | l4h[3];
		if (l4->proto == IPPROTO_TCP && (l4h = cursor_ptr(data, &c, 14, data_end)))
			flags = l4h[13];
	}
	if (t->port && t->port != dport)
		return 0;
	if (!(t->kinds & XDPG_TRACE_ALL)) {
		/* A preview: only what could start something. */
		int syn = l4->proto == IPPROTO_TCP && (flags & (XDPG_TCP_SYN | XDPG_TCP_ACK)) == XDPG_TCP_SYN;
		int udp = l4->proto == IPPROTO_UDP && dport != 0;

		if (!(syn && (t->kinds & XDPG_TRACE_SYN)) && !(udp && (t->kinds & XDPG_TRACE_UDP)))
			return 0;
	}
	if (!gcra_take(&t->tat, &now, t->interval_ns, t->limit_ns, 0)) {
		__sync_fetch_and_add(&t->over_budget, 1);
		return 0;
	}
	s = bpf_ringbuf_reserve(&xdpg_trace_ring, sizeof(*s), 0);
	if (!s) {
		__sync_fetch_and_add(&t->ring_full, 1);
		return 0;
	}
	len = data_end - data;
	s->ktime_ns = now;
	s->session = t->session;
	s->ifindex = ifindex;
	s->frame_len = frame_len; /* the whole frame (len: what the head is copied from) */
	s->reason = verdict & 0xff;
	s->passed = (verdict >> 8) & 1;
	s->rule = verdict >> 16;
	s->generation = generation;
	{
		/* The length passed must be 1..XDPG_TRACE_HEAD to every
		 * verifier: 6.1's loses a compare against 0 here, so the range
		 * is made by arithmetic ((n - 1) & 255) + 1, which it keeps. */
		__u64 n = len;

		if (n > XDPG_TRACE_HEAD)
			n = XDPG_TRACE_HEAD;
		s->head_len = 0;
		if (n >= 1) {
			barrier_var(n);
			n = ((n - 1) & (XDPG_TRACE_HEAD - 1)) + 1;
			if ((tc ? bpf_skb_load_bytes(ctx, 0, s->head, n) : bpf_xdp_load_bytes(ctx, 0, s->head, n)) == 0)
				s->head_len = n;
		}
	}
	__sync_fetch_and_add(&t->sent, 1);
	bpf_ringbuf_submit(s, 0);
	return 0;
}

/* The samplers of each hook: global functions, each verified once. */
__noinline int trace_sample(struct xdp_md *ctx, __u32 verdict)
{
	if (!ctx)
		return 0;
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;

	return trace_sample_frame(ctx, 0, data, data_end, xdp_frags ? bpf_xdp_get_buff_len(ctx) : data_end - data,
				  ctx->ingress_ifindex, verdict);
}

__noinline int trace_sample_tc(struct __sk_buff *skb, __u32 verdict)
{
	if (!skb)
		return 0;
	return trace_sample_frame(skb, 1, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->len,
				  skb->ingress_ifindex, verdict);
}

/* The hook at each verdict: when no trace runs, one load and one branch. */
static __always_inline void trace_hook(struct xdp_md *ctx, enum xdpg_reason reason, struct verdict *v, int passed)
{
	if (!*(volatile __u64 *)&xdpg_trace.until_ns)
		return;
	trace_sample(ctx, reason | (passed ? 1 << 8 : 0) | ((__u32)v->rule << 16));
}

static __always_inline void trace_hook_tc(struct __sk_buff *skb, enum xdpg_reason reason, struct verdict *v, int passed)
{
	if (!*(volatile __u64 *)&xdpg_trace.until_ns)
		return;
	trace_sample_tc(skb, reason | (passed ? 1 << 8 : 0) | ((__u32)v->rule << 16));
}

#endif
