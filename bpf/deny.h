/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* sources.deny, the source classifier (included by xdpguard.c after the
 * policy's .rodata flags). An IPv4 source costs one array lookup of its /24
 * block's word (struct xdpg_deny_block): the block is denied whole, or it
 * is not, or some longer entry (an address in xdpg_deny_hosts, a /25-/31 in
 * the trie) lies inside it, and only then is that table looked up. So the
 * cost of a source the list does not touch is flat in the list's size, and
 * the slow LPM lookup is paid only in blocks that hold a /25-/31. IPv6
 * sources look the trie up (has_deny: it holds IPv6 entries). */
#ifndef XDPG_DENY_H
#define XDPG_DENY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "types.h"
#include "maps.h"

/* Whether sources.deny holds the IPv4 source saddr (network order). */
static __always_inline int deny_v4_listed(__u32 saddr)
{
	struct xdpg_lpm_key key = { .prefixlen = 32 + 32, .family = 4 };
	__u32 a = bpf_ntohl(saddr), word = a >> 14; /* the /24 block a >> 8, 64 a word */
	__u64 bit = 1ULL << ((a >> 8) & 63);
	struct xdpg_deny_block *b;

	b = bpf_map_lookup_elem(&xdpg_deny_blocks, &word);
	if (!b)
		return 0;
	if (b->denied & bit)
		return 1;
	if ((b->hosts & bit) && bpf_map_lookup_elem(&xdpg_deny_hosts, &saddr))
		return 1;
	if (!(b->longer & bit))
		return 0;
	key.addr[0] = saddr;
	return bpf_map_lookup_elem(&xdpg_deny, &key) != NULL;
}

/* Whether sources.deny drops the IPv4 source saddr (network order): listed,
 * and neither link-local (169.254.0.0/16: neighbours, DHCP) nor protected
 * by the daemon (the SSH sessions' peers, the gateways, the resolvers), so
 * a list with bogons or private ranges cannot cut the host off its
 * network. A global function, so the verifier checks its branches once
 * instead of at both callers (the fast path and classify) times every
 * state after them, which doubled the instructions verified. */
__noinline int deny_v4(__u32 saddr)
{
	struct xdpg_src_key key = { .addr = { 0, 0, bpf_htonl(0x0000ffff), saddr } };

	if (!has_deny_blocks || !deny_v4_listed(saddr))
		return 0; /* no IPv4 entry at all, or not this source */
	if ((bpf_ntohl(saddr) >> 16) == 0xa9fe)
		return 0;
	return bpf_map_lookup_elem(&xdpg_protected, &key) == NULL;
}

/* Whether sources.deny holds the source of a parsed packet. */
static __always_inline int source_denied(struct l4_info *l4)
{
	if (!l4->is_v6)
		return has_deny_blocks && deny_v4(l4->saddr[3]);
	return has_deny && source_in(&xdpg_deny, l4);
}

#endif
