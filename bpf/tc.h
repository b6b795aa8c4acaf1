/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The tc (SCHED_CLS) entry of the data path: the XDP program's judge and
 * counters (judge_frame, record_frame in xdpguard.c) behind a tc ingress
 * hook, attached with tcx (6.6+) or a clsact direct-action filter. Included
 * at the end of xdpguard.c, so one object holds both programs over the same
 * maps and the same compiled policy. */
#ifndef XDPG_TC_H
#define XDPG_TC_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* How much of a frame the tc entry makes sure it can read: Ethernet, two
 * VLAN tags, IPv6 with 48 bytes of extension headers (or IPv4 with full
 * options) and the fixed TCP header. The judge reads only the linear part.
 * A GSO skb (the local stack's, GRO's) holds all its headers there, and
 * pulling one costs bulk traffic dearly (the skb is a clone: its head is
 * copied), so only other skbs built from pages are pulled. */
#define XDPG_TC_LINEAR 128

SEC("tc")
int xdpguard_tc(struct __sk_buff *skb)
{
	struct verdict v = { .rule = XDPG_RULE_NONE };
	__u32 len = skb->len, linear;
	struct l4_info l4;
	enum xdpg_reason reason;
	void *data, *data_end;
	int fast, passed;

	linear = skb->data_end - skb->data;
	if (linear < len && linear < XDPG_TC_LINEAR && !skb->gso_size)
		bpf_skb_pull_data(skb, len < XDPG_TC_LINEAR ? len : XDPG_TC_LINEAR); /* on failure: judged as is */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	reason = judge_frame(data, data_end, len, &l4, &v, &fast);
	/* A pass goes on to the next program on the hook (TC_ACT_UNSPEC is
	 * tcx's TCX_NEXT), so xdpguard first in line leaves the rest in
	 * place. */
	passed = record_frame(data, data_end, skb->ingress_ifindex, reason, &l4, &v, fast);
	trace_hook_tc(skb, reason, &v, passed);
	return passed ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

#endif
