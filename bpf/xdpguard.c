//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpguard: drop TCP SYNs to ports the policy does not allow, and SYNs over
 * the per-source and per-port rates. Optionally: denied and banned sources,
 * UDP by destination port, ICMP echo rates. Established TCP never touches a
 * limiter map; what the policy does not mention passes. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "types.h"
#include "parsing.h"
#include "maps.h"
#include "clock.h"

/* The policy of this generation, set by Go before load (see pkg/datapath).
 * The scalars come first: clang lays .rodata out in declaration order, and
 * every packet reads several of them, so they share one or two cache lines
 * instead of each sitting between 8 KiB bitmaps. */

/* Non-zero when sources.deny has IPv6 entries (in the trie, xdpg_deny);
 * has IPv4 entries (then every one marks its /24 in xdpg_deny_blocks, see
 * deny.h); has IPv4 addresses (xdpg_deny_hosts); when sources.trust has
 * entries. */
volatile const __u8 has_deny;
volatile const __u8 has_deny_blocks;
volatile const __u8 has_deny_hosts;
volatile const __u8 has_trust;
/* Non-zero when some source-scoped rule exists (scoped_ports). */
volatile const __u8 has_scoped;
/* UDP filtering (udp.allow), off unless has_udp. */
volatile const __u8 has_udp;
/* Monitor mode: judge and count as usual, but pass everything. */
volatile const __u8 monitor;
/* Non-zero when any rule is in monitor mode (monitor_ports). */
volatile const __u8 has_rule_monitor;
/* Non-zero when some limiter's tolerance is under one tick of the coarse
 * clock plus one interval: the limiters then read the precise clock (see
 * limiter_now). With the other flags, so the scalars stay on one line. */
volatile const __u8 precise_clock;
/* Set by Go when the XDP program is loaded with BPF_F_XDP_HAS_FRAGS (an MTU
 * that needs multi-buffer frames): a frame's length is then all of its
 * buffers, not the first one. */
volatile const __u8 xdp_frags;
/* Where replies to this host's own UDP traffic arrive (its ephemeral range). */
volatile const __u16 udp_reply_first;
volatile const __u16 udp_reply_last;
/* The generation number this program will have once switched in (for
 * drop events: which policy judged a packet). */
volatile const __u32 generation;
/* Ban length in ns (ratelimit.syn.ban); 0 disables bans. */
volatile const __u64 ban_ns;
/* GCRA parameters: emission interval (ns per SYN) and tolerance
 * (burst * interval). interval 0 disables that limiter. */
volatile const __u64 src_interval_ns;
volatile const __u64 src_limit_ns;
volatile const __u64 port_interval_ns;
volatile const __u64 port_limit_ns;
/* GCRA parameters for ICMP/ICMPv6 echo requests (icmp.echo); 0 = no limit. */
volatile const __u64 icmp_interval_ns;
volatile const __u64 icmp_limit_ns;

/* Bit p of allow_ports is set when TCP port p accepts new connections;
 * of scoped_ports, when some source-scoped rule names it. */
volatile const __u64 allow_ports[XDPG_PORTS / 64];
volatile const __u64 scoped_ports[XDPG_PORTS / 64];
/* The same for UDP ports. */
volatile const __u64 udp_allow_ports[XDPG_PORTS / 64];
volatile const __u64 udp_scoped_ports[XDPG_PORTS / 64];
/* Ports named by a monitor-mode rule (TCP, UDP): a SYN or datagram there
 * that no rule opens to its source passes, counted as the rule's would-be
 * drop. */
volatile const __u64 monitor_ports[XDPG_PORTS / 64];
volatile const __u64 udp_monitor_ports[XDPG_PORTS / 64];
/* The rule slot counting each port: TCP ports, then UDP ports; the rule
 * that opens the port to all, else its monitor-mode rule, else
 * XDPG_RULE_NONE. Here rather than in a map so that a policy of 65,536
 * ports costs no map updates at a switch. */
volatile const __u16 port_rules[2 * XDPG_PORTS];

/* Keep the enum and struct types in BTF for bpf2go -type. */
const enum xdpg_reason *unused_reason __attribute__((unused));
const struct xdpg_meta *unused_meta __attribute__((unused));
const struct xdpg_lpm_key *unused_lpm_key __attribute__((unused));
const enum xdpg_rule_slot *unused_rule_slot __attribute__((unused));
const enum xdpg_health_counter *unused_health __attribute__((unused));
const struct xdpg_event *unused_event __attribute__((unused));
const struct xdpg_event_budget *unused_event_config __attribute__((unused));
const enum xdpg_protection *unused_protection __attribute__((unused));
const enum xdpg_ban_origin *unused_ban_origin __attribute__((unused));
const struct xdpg_ban_range *unused_ban_range __attribute__((unused));
const struct xdpg_trace_config *unused_trace_config __attribute__((unused));
const struct xdpg_trace_sample *unused_trace_sample __attribute__((unused));

/* A packet's outcome besides its reason: the destination port (SYN, UDP),
 * the rule it is counted under, and whether a monitor-mode rule let a
 * would-be drop pass. */
struct verdict {
	__u16 dport;
	__u16 rule;
	__u8 monitored;
	__u8 synproxy; /* XDPG_SP_ACT_*: the SYN proxy answers or checks it (synproxy.h) */
};

/* Look the packet's source up in one of the generation's LPM tries. */
static __always_inline void *source_lookup(void *trie, struct l4_info *l4)
{
	struct xdpg_lpm_key key = { .prefixlen = 32 + 128 };

	if (l4->is_v6) {
		key.family = 6;
		__builtin_memcpy(key.addr, l4->saddr, sizeof(key.addr));
	} else {
		key.family = 4;
		key.addr[0] = l4->saddr[3];
	}
	return bpf_map_lookup_elem(trie, &key);
}

static __always_inline int source_in(void *trie, struct l4_info *l4)
{
	return source_lookup(trie, l4) != NULL;
}

#include "deny.h"

/* A port as an index the verifier can bound. Ports are assembled from two
 * bytes with an OR, and the verifier of 6.1 loses the range there (6.12
 * keeps it); clang drops a plain & 0xffff on a __u16, so the barrier hides
 * the type's range from it and the mask reaches the verifier. */
static __always_inline __u32 port_index(__u16 port)
{
	__u32 idx = port;

	barrier_var(idx);
	return idx & 0xffff;
}

static __always_inline int bit(volatile const __u64 *bitmap, __u16 port)
{
	__u32 idx = port_index(port);

	return (bitmap[idx >> 6] >> (idx & 63)) & 1;
}

/* The rule slot of a port open to all, or of its monitor-mode rule. */
static __always_inline __u16 port_rule(__u16 port, int udp)
{
	return port_rules[port_index(port) + (udp ? XDPG_PORTS : 0)];
}

/* Is port, closed to the world, open to this source by a scoped rule? If
 * so, *rule is the rule that opens it. Ports no scoped rule names cost one
 * bit test here, nothing more. */
static __always_inline int scoped_allows(struct l4_info *l4, __u16 port, int udp, __u16 *rule)
{
	struct xdpg_group_rule_key key = { .prefixlen = 32 };
	__u32 *group, idx, data;
	__u16 *slot;
	__u64 *word;

	if (!has_scoped || !bit(udp ? udp_scoped_ports : scoped_ports, port))
		return 0;
	group = source_lookup(&xdpg_scoped_src, l4);
	if (!group)
		return 0;
	idx = *group * 2 * (XDPG_PORTS / 64) + (udp ? XDPG_PORTS / 64 : 0) + (port >> 6);
	word = bpf_map_lookup_elem(&xdpg_group_ports, &idx);
	if (!word || !((*word >> (port & 63)) & 1))
		return 0;
	data = (*group << 17) | (udp ? 1 << 16 : 0) | port;
	key.data[0] = data >> 24;
	key.data[1] = data >> 16;
	key.data[2] = data >> 8;
	key.data[3] = data;
	slot = bpf_map_lookup_elem(&xdpg_group_rule, &key);
	*rule = slot ? *slot : XDPG_RULE_NONE;
	return 1;
}

/* Which rule lets a SYN or datagram to port in, if any: one open to all,
 * one scoped to this source, or (with v->monitored set) a monitor-mode
 * rule that would drop it but lets it pass. */
static __always_inline int port_admits(struct l4_info *l4, __u16 port, int udp, struct verdict *v)
{
	if (bit(udp ? udp_allow_ports : allow_ports, port)) {
		v->rule = port_rule(port, udp);
		return 1;
	}
	if (scoped_allows(l4, port, udp, &v->rule))
		return 1;
	if (has_rule_monitor && bit(udp ? udp_monitor_ports : monitor_ports, port)) {
		v->rule = port_rule(port, udp);
		v->monitored = 1;
		return 1;
	}
	return 0;
}

static __always_inline void health_inc(__u32 idx)
{
	__u64 *cnt = bpf_map_lookup_elem(&xdpg_health, &idx);

	if (cnt)
		*cnt += 1;
}

/* The limiters' clock. With a coarse clock, every SYN of one tick sees the
 * same time, so a bucket whose tolerance is under a tick would pass only
 * `burst` SYNs per tick whatever its rate; Go sets precise_clock for such
 * generations (pkg/datapath, limiterClock) and the cheaper coarse clock does
 * elsewhere. */
static __always_inline __u64 limiter_now(void)
{
	return precise_clock ? clock_precise() : clock_coarse();
}

static __always_inline __u64 clock_now(int precise)
{
	return precise ? limiter_now() : clock_coarse();
}

/* GCRA (ITU-T I.371 virtual scheduling): one more event at now fits a
 * bucket whose theoretical arrival time is tat if, once charged interval,
 * the bucket runs at most limit ahead of now. */
static __always_inline int gcra_fits(__u64 tat, __u64 now, __u64 interval, __u64 limit)
{
	__u64 base = tat > now ? tat : now;

	return base + interval - now <= limit;
}

/* Would one more SYN fit the bucket at *tat_p? Read-only: sheds a flood at
 * a saturated port without writing the per-source table. A refusal is
 * decided again on a fresh clock reading: another CPU whose reading came
 * after ours may have advanced the bucket. *now is updated. */
static __always_inline int gcra_peek(__u64 *tat_p, __u64 *now, __u64 interval, __u64 limit)
{
	__u64 tat = *(volatile __u64 *)tat_p;

	if (gcra_fits(tat, *now, interval, limit))
		return 1;
	*now = limiter_now();
	return gcra_fits(tat, *now, interval, limit);
}

/* Compare-and-swap attempts before an event is admitted anyway. Each lost
 * attempt is another CPU's successful take, so a bucket under contention
 * is still charged for every event; what is admitted this way is counted
 * (XDPG_HEALTH_LIMITER_CONTENDED). */
#define XDPG_GCRA_TRIES 8

/* GCRA: take one event from the bucket at *tat_p. State is a single u64, so
 * a compare-and-swap keeps it exact across CPUs without a lock. A refusal is
 * decided again on a fresh clock reading (see gcra_peek), and a bucket
 * further ahead than limit even then (the limit was lowered by a reload)
 * is clamped to it instead of locking the source out. No overflow: an idle
 * bucket restarts at now. precise selects the limiters' clock, else the
 * coarse one (the events budget). *now is updated.
 *
 * A global function: the verifier checks it once rather than at each
 * caller, where its loop cost about 30k verified instructions a call. */
__noinline int gcra_take(__u64 *tat_p, __u64 *now_p, __u64 interval, __u64 limit, int precise)
{
	__u64 tat, now;
	int fresh = 0;

	if (!tat_p || !now_p)
		return 1;
	tat = *(volatile __u64 *)tat_p;
	now = *now_p;

	for (int i = 0; i < XDPG_GCRA_TRIES; i++) {
		__u64 base = tat > now ? tat : now;
		__u64 next = base + interval, seen;

		if (next - now > limit) {
			if (!fresh) {
				fresh = 1;
				now = clock_now(precise);
				*now_p = now;
				continue;
			}
			if (base - now > limit)
				__sync_val_compare_and_swap(tat_p, tat, now + limit);
			return 0;
		}
		seen = __sync_val_compare_and_swap(tat_p, tat, next);
		if (seen == tat)
			return 1;
		tat = seen; /* another CPU took one first: decide again */
	}
	health_inc(XDPG_HEALTH_LIMITER_CONTENDED);
	return 1;
}

static __always_inline int v6_link_local(const __u32 *addr)
{
	return (bpf_ntohl(addr[0]) & 0xffc00000) == 0xfe800000;
}

/* The per-source key: IPv4 /32, IPv6 /64 (one host owns a whole /64, so
 * rotating the low bits must not mint fresh budgets or escape a ban),
 * except link-local IPv6, keyed per address: its /64 is every neighbour. */
static __always_inline void src_key_of(struct l4_info *l4, struct xdpg_src_key *key)
{
	__builtin_memcpy(key->addr, l4->saddr, sizeof(key->addr));
	if (l4->is_v6 && !v6_link_local(l4->saddr)) {
		key->addr[2] = 0;
		key->addr[3] = 0;
	}
}

/* Link-local sources (fe80::/10, 169.254.0.0/16) are neighbours: routers,
 * neighbour discovery, DHCP. Anyone on the link can forge them, so they are
 * never banned. */
static __always_inline int link_local(struct l4_info *l4)
{
	if (l4->is_v6)
		return v6_link_local(l4->saddr);
	return (bpf_ntohl(l4->saddr[3]) >> 16) == 0xa9fe;
}

/* The ban the source is serving, or NULL. Expired bans are removed here, so
 * they end on time without the daemon. */
static __always_inline struct xdpg_source *ban_of(struct xdpg_src_key *key)
{
	struct xdpg_source *ban = bpf_map_lookup_elem(&xdpg_bans, key);

	if (!ban || ban->at > clock_coarse())
		return ban;
	bpf_map_delete_elem(&xdpg_bans, key);
	return NULL;
}

/* How many nested prefix bans range_ban looks through when the narrowest
 * has ended (an ended one stays until the daemon's sweep). */
#define XDPG_BAN_NESTING 4

/* The operator's or a feed's ban covering the source, if one is in force
 * (xdpg_ban_ranges). The longest matching prefix decides; if its ban has
 * ended, the next wider one does (a lookup with a shorter prefix length),
 * so a narrow ban that ends never hides a wide one still in force. One LPM
 * lookup when nothing is banned, on an empty trie little more than a
 * call. */
static __always_inline struct xdpg_ban_range *range_ban(struct l4_info *l4)
{
	struct xdpg_lpm_key key = { .prefixlen = 32 + 128 };
	__u64 now = clock_coarse();

	if (l4->is_v6) {
		key.family = 6;
		__builtin_memcpy(key.addr, l4->saddr, sizeof(key.addr));
	} else {
		key.family = 4;
		key.addr[0] = l4->saddr[3];
	}
	for (int i = 0; i < XDPG_BAN_NESTING; i++) {
		struct xdpg_ban_range *b = bpf_map_lookup_elem(&xdpg_ban_ranges, &key);

		if (!b)
			return NULL;
		if (b->until > now)
			return b;
		if (b->bits == 0)
			return NULL;
		key.prefixlen = 32 + b->bits - 1;
	}
	return NULL;
}

/* The ban the source is serving from either table, as a drop, or
 * XDPG_REASON_MAX when none applies. key is the source's ban key. With
 * trust_after, the trust list is consulted only once a ban is found, so a
 * path whose sources are mostly unbanned (UDP) pays no trie lookup for it. */
static __always_inline enum xdpg_reason ban_verdict(struct l4_info *l4, struct xdpg_src_key *key,
						    int trust_after)
{
	struct xdpg_ban_range *rb = NULL;
	struct xdpg_source *ban = NULL;

	if (ban_ns)
		ban = ban_of(key);
	if (!ban) {
		if (!(rb = range_ban(l4)))
			return XDPG_REASON_MAX;
		/* A prefix ban (a feed's, or an operator's wide one) never
		 * cuts a protected or link-local source, as the SYN limit
		 * never bans one. */
		if (link_local(l4) || bpf_map_lookup_elem(&xdpg_protected, key))
			return XDPG_REASON_MAX;
	}
	if (trust_after && has_trust && source_in(&xdpg_trust, l4))
		return XDPG_REASON_MAX;
	__sync_fetch_and_add(ban ? &ban->drops : &rb->drops, 1);
	return XDPG_DROP_BANNED;
}

/* Ban a source that missed its SYN rate, unless it is protected. A full
 * table evicts nothing: the ban that cannot be stored is counted. */
static __always_inline void ban_source(struct l4_info *l4, struct xdpg_src_key *key, __u64 now)
{
	struct xdpg_source ban = { .at = now + ban_ns };

	if (link_local(l4) || bpf_map_lookup_elem(&xdpg_protected, key)) {
		health_inc(XDPG_HEALTH_BANS_PROTECTED);
		return;
	}
	if (bpf_map_update_elem(&xdpg_bans, key, &ban, BPF_ANY))
		health_inc(XDPG_HEALTH_BANS_NOT_STORED);
}

/* Take a token from key's bucket in one of the per-source tables, creating
 * the bucket (with its first token taken) on a source's first packet. */
static __always_inline int bucket_take(void *table, struct xdpg_src_key *key, __u64 *now, __u64 interval,
				       __u64 limit)
{
	struct xdpg_source *src = bpf_map_lookup_elem(table, key);

	if (!src) {
		struct xdpg_source first = { .at = *now + interval };

		if (bpf_map_update_elem(table, key, &first, BPF_NOEXIST) == 0) {
			if (table == (void *)&xdpg_src_buckets)
				health_inc(XDPG_HEALTH_SRC_INSERTS);
			return 1;
		}
		/* Lost an insert race: use the winner's bucket. */
		src = bpf_map_lookup_elem(table, key);
		if (!src)
			return 1; /* table busy: fail open (the per-port limit still applies to SYNs) */
	}
	if (gcra_take(&src->at, now, interval, limit, 1))
		return 1;
	__sync_fetch_and_add(&src->drops, 1);
	return 0;
}

static __always_inline int src_take(struct xdpg_src_key *key, __u64 *now)
{
	return bucket_take(&xdpg_src_buckets, key, now, src_interval_ns, src_limit_ns);
}

#include "synproxy.h"

/* ICMP messages that ask this host for an answer: echo, timestamp,
 * information and address mask requests; ICMPv6 echo and node information
 * queries. Neighbour discovery, MLD, errors and replies are not. */
static __always_inline int icmp_request(__u8 type, int v6)
{
	if (v6)
		return type == 128 || type == 139;
	return type == 8 || type == 13 || type == 15 || type == 17;
}

/* ICMP requests: a banned source's are dropped, and the rest limited per
 * source under icmp.echo. Everything else passes: neighbour discovery,
 * errors (fragmentation needed, packet too big), replies to our own
 * requests. */
static __always_inline enum xdpg_reason judge_icmp(void *data, void *data_end, struct hdr_cursor *c,
						   struct l4_info *l4)
{
	enum xdpg_reason banned;
	struct xdpg_src_key key;
	__u8 *type;

	c->off = l4->l4_off;
	type = cursor_ptr(data, c, 1, data_end);
	if (!type || l4->l4_len < 1)
		return l4->first_frag ? XDPG_DROP_FRAGMENT : XDPG_DROP_MALFORMED;
	if (!icmp_request(*type, l4->is_v6))
		return XDPG_PASS_NOT_TCP;
	if (has_trust && source_in(&xdpg_trust, l4))
		return XDPG_PASS_NOT_TCP;
	src_key_of(l4, &key);
	if ((banned = ban_verdict(l4, &key, 0)) != XDPG_REASON_MAX)
		return banned;
	if (icmp_interval_ns) {
		__u64 now = limiter_now();

		if (!bucket_take(&xdpg_icmp_buckets, &key, &now, icmp_interval_ns, icmp_limit_ns))
			return XDPG_DROP_ICMP_RATE_LIMITED;
	}
	return XDPG_PASS_NOT_TCP;
}

/* Decide a TCP SYN (SYN set, ACK clear) to dport. */
static __always_inline enum xdpg_reason judge_syn(struct l4_info *l4, __u16 dport, struct verdict *v)
{
	/* What an admitted SYN becomes when no limit stops it. */
	enum xdpg_reason admitted = XDPG_PASS_SYN_ALLOWED, banned;
	struct xdpg_src_key key;
	__u64 *port_tat = NULL;
	__u64 now;

	/* Closed ports drop before any clock read or limiter write, so a
	 * port scan costs one bit test. */
	if (!port_admits(l4, dport, 0, v)) {
		v->rule = XDPG_RULE_TCP_CLOSED;
		return XDPG_DROP_PORT_NOT_ALLOWED;
	}
	if (v->monitored)
		admitted = XDPG_DROP_PORT_NOT_ALLOWED; /* passes: see record() */
	else if (has_synproxy && !monitor && synproxy_wants(dport)) /* monitor mode answers nothing */
		v->synproxy = XDPG_SP_ACT_SYN;
	if (has_trust && source_in(&xdpg_trust, l4))
		return admitted; /* trusted: no rate limits, no bans */
	src_key_of(l4, &key);
	if ((banned = ban_verdict(l4, &key, 0)) != XDPG_REASON_MAX)
		return banned;
	/* A proxied port limits and bans only sources a handshake proved. */
	if (v->synproxy && !synproxy_proven(&key))
		return admitted;
	if (!src_interval_ns && !port_interval_ns)
		return admitted;

	now = limiter_now();
	if (port_interval_ns) {
		__u32 idx = dport;

		port_tat = bpf_map_lookup_elem(&xdpg_port_buckets, &idx);
		if (port_tat && !gcra_peek(port_tat, &now, port_interval_ns, port_limit_ns))
			return XDPG_DROP_PORT_RATE_LIMITED;
	}
	if (src_interval_ns && !src_take(&key, &now)) {
		if (ban_ns)
			ban_source(l4, &key, now);
		return XDPG_DROP_RATE_LIMITED;
	}
	if (port_tat && !gcra_take(port_tat, &now, port_interval_ns, port_limit_ns, 1))
		return XDPG_DROP_PORT_RATE_LIMITED;
	return admitted;
}

/* Decide a UDP datagram under udp.allow. */
static __always_inline enum xdpg_reason judge_udp(void *data, void *data_end, struct hdr_cursor *c,
						  struct l4_info *l4, struct verdict *v)
{
	__u8 *udp;
	__u16 dport;

	c->off = l4->l4_off;
	udp = cursor_ptr(data, c, 8, data_end);
	if (!udp || l4->l4_len < 8)
		return l4->first_frag ? XDPG_DROP_FRAGMENT : XDPG_DROP_MALFORMED;
	dport = ((__u16)udp[2] << 8) | udp[3];
	v->dport = dport;
	/* Replies are checked before monitor-mode rules: what enforcing
	 * would let in is never a would-be drop. */
	if (bit(udp_allow_ports, dport))
		v->rule = port_rule(dport, 1);
	else if (!scoped_allows(l4, dport, 1, &v->rule))
		goto closed;
	/* A datagram to a service can start something: a banned source's is
	 * dropped. Replies (below) never are. */
	{
		struct xdpg_src_key key;
		enum xdpg_reason banned;

		src_key_of(l4, &key);
		if ((banned = ban_verdict(l4, &key, 1)) != XDPG_REASON_MAX)
			return banned;
	}
	return XDPG_PASS_UDP_ALLOWED;
closed:
	if (dport >= udp_reply_first && dport <= udp_reply_last) {
		v->rule = XDPG_RULE_UDP_REPLIES;
		return XDPG_PASS_UDP_REPLY;
	}
	if (has_rule_monitor && bit(udp_monitor_ports, dport)) {
		v->rule = port_rule(dport, 1);
		v->monitored = 1;
	} else {
		v->rule = XDPG_RULE_UDP_CLOSED;
	}
	return XDPG_DROP_UDP_PORT_NOT_ALLOWED;
}

/* A denied source that sources.deny must not cut: a link-local neighbour
 * (router advertisements, neighbour discovery, DHCP) or a source the daemon
 * protects (the peers of SSH sessions, the gateways, the resolvers), so a
 * deny list holding private or bogon ranges (FireHOL level1 lists 10/8 and
 * 169.254/16) cannot cut the host off its own network. Only denied
 * packets pay for the lookup. */
static __always_inline int deny_exempt(struct l4_info *l4)
{
	struct xdpg_src_key key;

	if (link_local(l4))
		return 1;
	src_key_of(l4, &key);
	return bpf_map_lookup_elem(&xdpg_protected, &key) != NULL;
}

/* The fast path: untagged Ethernet, IPv4 without options or fragments, TCP
 * with a sound header. That is nearly all traffic, and most of what a flood
 * or a scan sends; this decides its two commonest cases, a segment that
 * cannot open a connection and a SYN to a port nothing opens, straight from
 * fixed offsets: neither depends on bans, which only stop what could start
 * something. A denied source drops here too (deny.h: one block lookup for
 * a source the list does not hold). Everything else returns
 * XDPG_REASON_MAX: the general parser judges it from the start. Both paths reach the same verdicts, which the
 * differential test checks against pkg/reference. */
static __always_inline enum xdpg_reason fast_path(void *data, void *data_end, __u32 len, struct verdict *v)
{
	struct ethhdr *eth = data;
	__u8 *ip = data + sizeof(*eth);
	__u8 *tcp = ip + 20;
	__u32 tot_len, doff, saddr;
	__u16 dport;
	__u8 flags;

	if ((void *)(tcp + 20) > data_end)
		return XDPG_REASON_MAX;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip[0] != 0x45 || ip[9] != IPPROTO_TCP)
		return XDPG_REASON_MAX;
	if ((ip[6] & 0x3f) || ip[7]) /* more fragments, or an offset */
		return XDPG_REASON_MAX;
	tot_len = ((__u32)ip[2] << 8) | ip[3];
	doff = (tcp[12] >> 4) * 4;
	if (tot_len < 40 || sizeof(*eth) + tot_len > len || doff < 20 || doff > tot_len - 20)
		return XDPG_REASON_MAX;
	/* A denied source's every packet drops, as in classify. (The flag is
	 * tested here, not only in deny_v4: a policy without IPv4 entries
	 * then makes no call at all, the verifier removing it.) */
	__builtin_memcpy(&saddr, ip + 12, sizeof(saddr));
	if (has_deny_blocks && deny_v4(saddr)) {
		v->rule = XDPG_RULE_SOURCES_DENY;
		return XDPG_DROP_SOURCE_DENIED;
	}

	flags = tcp[13];
	if ((flags & (XDPG_TCP_SYN | XDPG_TCP_ACK)) != XDPG_TCP_SYN)
		return XDPG_PASS_NOT_SYN;
	if (flags & (XDPG_TCP_FIN | XDPG_TCP_RST))
		return XDPG_DROP_INVALID_FLAGS;
	dport = ((__u16)tcp[2] << 8) | tcp[3];
	if (bit(allow_ports, dport) || (has_scoped && bit(scoped_ports, dport)) ||
	    (has_rule_monitor && bit(monitor_ports, dport)))
		return XDPG_REASON_MAX; /* some rule may open it: judge_syn decides */
	v->dport = dport;
	v->rule = XDPG_RULE_TCP_CLOSED;
	return XDPG_DROP_PORT_NOT_ALLOWED;
}

/* What a drop event reports of a packet the fast path judged: a plain IPv4
 * TCP frame (read again only when an event is sent). */
static __always_inline void fast_path_l4(void *data, void *data_end, struct l4_info *l4)
{
	__u8 *ip = data + sizeof(struct ethhdr);

	*l4 = (struct l4_info){ .proto = IPPROTO_TCP, .saddr[2] = bpf_htonl(0x0000ffff) };
	if ((void *)(ip + 20) <= data_end)
		__builtin_memcpy(&l4->saddr[3], ip + 12, 4);
}

/* The general path: any frame the fast path left. */
static __always_inline enum xdpg_reason classify(void *data, void *data_end, __u32 len, struct l4_info *l4,
						 struct verdict *v)
{
	struct hdr_cursor c = { .off = 0, .len = len };
	__u16 proto;
	__u8 *tcp;
	__u32 doff;
	__u8 flags;
	int rc;

	__builtin_memset(l4, 0, sizeof(*l4));
	rc = parse_eth(data, data_end, &c, &proto);
	if (rc != XDPG_PARSE_OK)
		return XDPG_DROP_MALFORMED;
	if (proto == bpf_htons(ETH_P_IP))
		rc = parse_ipv4(data, data_end, &c, l4);
	else if (proto == bpf_htons(ETH_P_IPV6))
		rc = parse_ipv6(data, data_end, &c, l4);
	else
		return XDPG_PASS_NOT_IP;
	if (rc != XDPG_PARSE_OK)
		return XDPG_DROP_MALFORMED;
	/* (deny_v4 already leaves out the exempt IPv4 sources.) */
	if (source_denied(l4) && !(l4->is_v6 && deny_exempt(l4))) {
		v->rule = XDPG_RULE_SOURCES_DENY;
		return XDPG_DROP_SOURCE_DENIED;
	}
	/* Bans are judged where something could start: SYNs (judge_syn),
	 * datagrams to services (judge_udp), ICMP requests (judge_icmp).
	 * Established connections, replies and neighbour discovery never meet
	 * a ban, so a spoofer who gets a victim banned cannot cut them. */
	if (l4->later_frag)
		return (l4->frag_off_one && l4->proto == IPPROTO_TCP) ? XDPG_DROP_FRAGMENT : XDPG_PASS_FRAGMENT;
	if (l4->proto == IPPROTO_UDP && has_udp)
		return judge_udp(data, data_end, &c, l4, v);
	if (l4->proto == (l4->is_v6 ? XDPG_IPPROTO_ICMPV6 : IPPROTO_ICMP))
		return judge_icmp(data, data_end, &c, l4);
	if (l4->proto != IPPROTO_TCP)
		return XDPG_PASS_NOT_TCP;

	/* The fixed TCP header holds the ports and flags. A first fragment
	 * too short to show them must not reach reassembly (RFC 1858). */
	c.off = l4->l4_off;
	tcp = cursor_ptr(data, &c, 20, data_end);
	if (!tcp || l4->l4_len < 20)
		return l4->first_frag ? XDPG_DROP_FRAGMENT : XDPG_DROP_MALFORMED;
	doff = (tcp[12] >> 4) * 4;
	if (doff < 20 || (!l4->first_frag && doff > l4->l4_len))
		return XDPG_DROP_MALFORMED;

	flags = tcp[13];
	if ((flags & (XDPG_TCP_SYN | XDPG_TCP_ACK)) != XDPG_TCP_SYN) {
		if (has_synproxy && !l4->first_frag && synproxy_ack_candidate(flags, ((__u16)tcp[2] << 8) | tcp[3]))
			v->synproxy = XDPG_SP_ACT_ACK;
		return XDPG_PASS_NOT_SYN;
	}
	if (flags & (XDPG_TCP_FIN | XDPG_TCP_RST))
		return XDPG_DROP_INVALID_FLAGS;

	v->dport = ((__u16)tcp[2] << 8) | tcp[3];
	return judge_syn(l4, v->dport, v);
}

/* Does the packet pass? Drops pass in monitor mode, and so do the would-be
 * drops of a monitor-mode rule (their reason is the drop they escaped; a
 * rate limit still drops). */
static __always_inline int passes(enum xdpg_reason reason, struct verdict *v)
{
	return reason < XDPG_DROP_PORT_NOT_ALLOWED || monitor ||
	       (v->monitored && (reason == XDPG_DROP_PORT_NOT_ALLOWED || reason == XDPG_DROP_UDP_PORT_NOT_ALLOWED));
}

static __always_inline void record_rule(enum xdpg_reason reason, struct verdict *v)
{
	struct xdpg_rule_counters *rc;
	__u32 idx = v->rule;

	if (v->rule == XDPG_RULE_NONE)
		return;
	rc = bpf_map_lookup_elem(&xdpg_rule_stats, &idx);
	if (!rc)
		return;
	if (reason < XDPG_DROP_PORT_NOT_ALLOWED)
		rc->passed++;
	else if (passes(reason, v))
		rc->monitored++;
	else
		rc->dropped++;
}

static __always_inline void count_reason(__u32 idx)
{
	__u64 *cnt = bpf_map_lookup_elem(&xdpg_stats, &idx);

	if (cnt)
		*cnt += 1;
}

/* Count a drop: its reason (apart, when it passes: what would have
 * dropped), its rule, and its destination port. */
static __always_inline void record_drop(enum xdpg_reason reason, struct verdict *v)
{
	struct xdpg_port_counters *pc;
	__u32 idx = v->dport;

	count_reason(reason + (passes(reason, v) ? XDPG_REASON_MAX : 0));
	record_rule(reason, v);
	if (reason != XDPG_DROP_PORT_NOT_ALLOWED && reason != XDPG_DROP_RATE_LIMITED &&
	    reason != XDPG_DROP_PORT_RATE_LIMITED && reason != XDPG_DROP_UDP_PORT_NOT_ALLOWED)
		return;
	pc = bpf_map_lookup_elem(&xdpg_port_drops, &idx);
	if (!pc)
		return;
	if (reason == XDPG_DROP_PORT_NOT_ALLOWED)
		pc->not_allowed++;
	else if (reason == XDPG_DROP_RATE_LIMITED)
		pc->rate_limited++;
	else if (reason == XDPG_DROP_PORT_RATE_LIMITED)
		pc->port_rate_limited++;
	else
		pc->udp_not_allowed++;
}

/* The closed-port drop of the fast path, counted like record_drop would
 * (reason, tcp/closed, port) without its branches: the fast path leaves
 * monitored ports to judge_syn, so only global monitor mode lets it pass. */
static __always_inline void record_closed_port_drop(__u16 dport)
{
	struct xdpg_rule_counters *rc;
	struct xdpg_port_counters *pc;
	__u32 rule = XDPG_RULE_TCP_CLOSED, idx = dport;

	count_reason(XDPG_DROP_PORT_NOT_ALLOWED + (monitor ? XDPG_REASON_MAX : 0));
	rc = bpf_map_lookup_elem(&xdpg_rule_stats, &rule);
	if (rc) {
		if (monitor)
			rc->monitored++;
		else
			rc->dropped++;
	}
	pc = bpf_map_lookup_elem(&xdpg_port_drops, &idx);
	if (pc)
		pc->not_allowed++;
}

/* Send a drop to the daemon, within the events budget: a flood costs the
 * ring buffer and the daemon at most the budget, and what is left out is
 * counted. Off (one array lookup) unless a daemon asked for events. A drop
 * of the fast path (fast) has no l4: it is read here, only when sent. */
static __always_inline void emit_event(void *data, void *data_end, __u32 ifindex, enum xdpg_reason reason,
				       struct l4_info *l4, struct verdict *v, int fast)
{
	struct xdpg_event_budget *cfg;
	struct l4_info fast_l4;
	struct xdpg_event *e;
	__u32 zero = 0;
	__u64 now;

	cfg = bpf_map_lookup_elem(&xdpg_event_config, &zero);
	if (!cfg || !cfg->interval_ns)
		return;
	if (fast) {
		fast_path_l4(data, data_end, &fast_l4);
		l4 = &fast_l4;
	}
	now = clock_coarse();
	/* Over budget (all a flood's drops but the first few): decided on one
	 * read, without gcra_take's call, second clock read and CAS. */
	if (!gcra_fits(*(volatile __u64 *)&cfg->tat, now, cfg->interval_ns, cfg->limit_ns) ||
	    !gcra_take(&cfg->tat, &now, cfg->interval_ns, cfg->limit_ns, 0)) {
		health_inc(XDPG_HEALTH_EVENTS_OVER_BUDGET);
		return;
	}
	e = bpf_ringbuf_reserve(&xdpg_events, sizeof(*e), 0);
	if (!e) {
		health_inc(XDPG_HEALTH_EVENTS_RING_FULL);
		return;
	}
	e->ktime_ns = now;
	e->ifindex = ifindex;
	e->reason = reason;
	e->flags = passes(reason, v) ? XDPG_EVENT_MONITORED : 0;
	e->family = l4->is_v6 ? 6 : (l4->saddr[2] == bpf_htonl(0xffff) ? 4 : 0);
	e->proto = l4->proto;
	e->dport = v->dport;
	e->rule = v->rule;
	__builtin_memcpy(e->saddr, l4->saddr, sizeof(e->saddr));
	e->generation = generation;
	bpf_ringbuf_submit(e, 0);
}

/* One frame's reason, for either hook (XDP here, tc in tc.h). data..data_end
 * is what can be read (XDP's first buffer, an skb's linear part), len the
 * whole frame. Nothing is counted yet, and a reason that a header missing
 * from data..data_end decided (MALFORMED, FRAGMENT) was decided before any
 * map was written, so a hook may make more of the frame readable and judge
 * it again. */
static __always_inline enum xdpg_reason judge_frame(void *data, void *data_end, __u32 len, struct l4_info *l4,
						    struct verdict *v, int *fast)
{
	enum xdpg_reason reason = fast_path(data, data_end, len, v);

	*fast = reason != XDPG_REASON_MAX;
	return *fast ? reason : classify(data, data_end, len, l4, v);
}

/* Count a frame's reason (and send its drop event): 1 when it passes. */
static __always_inline int record_frame(void *data, void *data_end, __u32 ifindex, enum xdpg_reason reason,
					struct l4_info *l4, struct verdict *v, int fast)
{
	/* A scan or a flood to a closed port: the drop to make cheapest. */
	if (fast && reason == XDPG_DROP_PORT_NOT_ALLOWED) {
		record_closed_port_drop(v->dport);
		emit_event(data, data_end, ifindex, reason, l4, v, 1);
		return monitor;
	}
	/* Passing is the common case: one counter, and the rule's if any. */
	if (reason < XDPG_DROP_PORT_NOT_ALLOWED) {
		count_reason(reason);
		record_rule(reason, v);
		return 1;
	}
	record_drop(reason, v);
	emit_event(data, data_end, ifindex, reason, l4, v, fast);
	return passes(reason, v);
}

#include "trace.h"

SEC("xdp")
int xdpguard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = xdp_frags ? bpf_xdp_get_buff_len(ctx) : data_end - data;
	struct verdict v = { .rule = XDPG_RULE_NONE };
	struct l4_info l4; /* filled by the general path, for its events */
	enum xdpg_reason reason;
	int fast, passed, act;

	reason = judge_frame(data, data_end, len, &l4, &v, &fast);
	/* An ACK the fast path passed may complete a handshake the SYN proxy
	 * answered: checked in a function of its own. */
	if (has_synproxy && fast && reason == XDPG_PASS_NOT_SYN) {
		count_reason(reason);
		act = synproxy_fast_ack(ctx);
		trace_hook(ctx, reason, &v, act != XDP_DROP);
		return act;
	}
	passed = record_frame(data, data_end, ctx->ingress_ifindex, reason, &l4, &v, fast);
	/* The SYN proxy answers (XDP_TX) or checks what the rules pass; the
	 * trace reports what it did (answered counts as passed). */
	act = passed ? XDP_PASS : XDP_DROP;
	if (passed && v.synproxy && reason < XDPG_DROP_PORT_NOT_ALLOWED)
		act = synproxy_act(ctx, &l4, v.synproxy);
	trace_hook(ctx, reason, &v, act != XDP_DROP);
	return act;
}

/* The same judge behind a tc hook (tcx or clsact), for veth and other
 * virtual devices where XDP costs established traffic most. */
#include "tc.h"

char __license[] SEC("license") = "Dual BSD/GPL";
