/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types shared between the XDP program and Go (exported by bpf2go -type). */
#ifndef XDPG_TYPES_H
#define XDPG_TYPES_H

#include <linux/types.h>

/* Bump when a pinned map's layout or meaning changes: a daemon refuses to
 * adopt pins written under another schema instead of misreading them. */
#define XDPG_SCHEMA_VERSION 3

/* Why a packet got its verdict. Passes come first, then drops; Go keeps the
 * names and verdicts (pkg/datapath/reasons.go) and a test checks they match. */
enum xdpg_reason {
	XDPG_PASS_NOT_IP = 0,	     /* ARP, LLDP, any non-IP ethertype */
	XDPG_PASS_NOT_TCP,	     /* IP but not TCP: UDP, ICMP, ND, ESP, ... */
	XDPG_PASS_NOT_SYN,	     /* TCP that cannot open a connection */
	XDPG_PASS_FRAGMENT,	     /* non-first fragment: carries no TCP header */
	XDPG_PASS_SYN_ALLOWED,	     /* SYN to an allowed port, within its limits */
	XDPG_PASS_UDP_ALLOWED,	     /* UDP to a port udp.allow opens (to this source) */
	XDPG_PASS_UDP_REPLY,	     /* UDP to the ephemeral range: replies to us */
	XDPG_DROP_PORT_NOT_ALLOWED,  /* SYN to a port the policy does not list */
	XDPG_DROP_RATE_LIMITED,	     /* source over its SYN rate */
	XDPG_DROP_PORT_RATE_LIMITED, /* port over its all-sources SYN rate */
	XDPG_DROP_MALFORMED,	     /* headers the stack would reject or we cannot bound */
	XDPG_DROP_FRAGMENT,	     /* fragment hiding the TCP flags or port */
	XDPG_DROP_INVALID_FLAGS,     /* SYN+FIN or SYN+RST: never legitimate */
	XDPG_DROP_SOURCE_DENIED,     /* source in sources.deny: every IP packet */
	XDPG_DROP_BANNED,	     /* source banned for exceeding its SYN rate */
	XDPG_DROP_UDP_PORT_NOT_ALLOWED, /* UDP to a port udp.allow does not open */
	XDPG_DROP_ICMP_RATE_LIMITED, /* echo request over the source's icmp.echo rate */
	XDPG_REASON_MAX,
};

/* Counter slots of the rules (xdpg_rule_stats, xdpg_rule_names). The
 * implicit rules have fixed slots; Go gives each named rule of the policy a
 * slot from XDPG_RULE_FIRST_NAMED on, kept across reloads while the name
 * stays (pkg/datapath/rules.go). */
enum xdpg_rule_slot {
	XDPG_RULE_TCP_CLOSED = 0,  /* tcp/closed */
	XDPG_RULE_UDP_CLOSED,      /* udp/closed */
	XDPG_RULE_UDP_REPLIES,     /* udp/replies */
	XDPG_RULE_SOURCES_DENY,    /* sources/deny */
	XDPG_RULE_TCP_LISTENING,   /* tcp/listening */
	XDPG_RULE_FIRST_NAMED = 8,
	XDPG_RULE_MAX = 1024,
	XDPG_RULE_NONE = 0xffff,   /* the verdict is not a rule's */
};

/* What a rule's packets became: passed, dropped, or passed although the
 * rule (or the policy) would drop them, in monitor mode. Per CPU. */
struct xdpg_rule_counters {
	__u64 passed;
	__u64 dropped;
	__u64 monitored;
};

/* A rule's name, for `status` and /metrics. Written by Go only. */
struct xdpg_rule_name {
	char name[96];
};

/* Key of xdpg_group_rule: which rule opens a port to a scoped group. data
 * is big-endian: group (15 bits), UDP (1 bit), port (16 bits); prefixlen
 * is 16 + the port prefix, so a port range is a few entries. */
struct xdpg_group_rule_key {
	__u32 prefixlen;
	__u8 data[4];
};

/* Health counters of the data path (xdpg_health, per CPU). */
enum xdpg_health_counter {
	XDPG_HEALTH_EVENTS_OVER_BUDGET = 0, /* drop events not sent: over the events budget */
	XDPG_HEALTH_EVENTS_RING_FULL,       /* drop events not sent: the ring buffer was full */
	XDPG_HEALTH_SRC_INSERTS,            /* sources added to the SYN limiter table (evictions once full) */
	XDPG_HEALTH_BANS_NOT_STORED,        /* bans not written: the ban table was full (nothing is evicted) */
	XDPG_HEALTH_BANS_PROTECTED,         /* bans not written: the source is protected (link-local, xdpg_protected) */
	XDPG_HEALTH_LIMITER_CONTENDED,      /* events admitted after XDPG_GCRA_TRIES lost compare-and-swaps */
	XDPG_HEALTH_MAX,
};

/* A sampled drop, sent to the daemon through the xdpg_events ring buffer. */
#define XDPG_EVENT_MONITORED 1 /* flags: the drop was let through (monitor mode) */

struct xdpg_event {
	__u64 ktime_ns;  /* bpf_ktime_get_coarse_ns() */
	__u32 ifindex;
	__u8 reason;     /* enum xdpg_reason */
	__u8 flags;
	__u8 family;     /* 4, 6, or 0 when the source is unknown (not IP, malformed) */
	__u8 proto;
	__u16 dport;     /* SYN and UDP drops, else 0 */
	__u16 rule;      /* rule slot, or XDPG_RULE_NONE */
	__u32 saddr[4];  /* as in struct l4_info */
	__u32 generation; /* the policy generation that judged it (low 32 bits) */
};

/* The events budget (GCRA: interval and tolerance in ns, 0 = no events),
 * written by the daemon that reads the events; tat is the data path's. */
struct xdpg_event_budget {
	__u64 interval_ns;
	__u64 limit_ns;
	__u64 tat;
};

/* The trace in progress (xdpg_trace, bpf/trace.h), written by `xdpguard
 * trace` and `preview`. A packet is sampled while until_ns (CLOCK_MONOTONIC
 * ns) has not passed, when (saddr & mask) == addr word by word (sources as in
 * struct l4_info), its destination port is port (0: any), and it is of
 * kinds; interval_ns and limit_ns are the budget (GCRA, tat the data
 * path's); the counters say what the budget and the ring left out. */
#define XDPG_TRACE_ALL 1 /* kinds: every packet */
#define XDPG_TRACE_SYN 2 /* kinds: TCP SYNs */
#define XDPG_TRACE_UDP 4 /* kinds: UDP datagrams */
#define XDPG_TRACE_HEAD 256 /* bytes of each frame a sample holds */

struct xdpg_trace_config {
	__u64 until_ns;
	__u64 interval_ns;
	__u64 limit_ns;
	__u64 tat;
	__u64 sent;
	__u64 over_budget;
	__u64 ring_full;
	__u32 addr[4];
	__u32 mask[4];
	__u32 session; /* copied into each sample: the CLI skips others' */
	__u16 port;
	__u8 kinds;
	__u8 pad;
};

/* One sampled packet (xdpg_trace_ring): its verdict and its first bytes. */
struct xdpg_trace_sample {
	__u64 ktime_ns;   /* bpf_ktime_get_coarse_ns() */
	__u32 session;
	__u32 ifindex;
	__u32 frame_len;  /* the frame's length; head holds head_len of it */
	__u32 generation; /* the policy generation that judged it (low 32 bits) */
	__u16 head_len;
	__u16 rule;       /* rule slot, or XDPG_RULE_NONE */
	__u8 reason;      /* enum xdpg_reason */
	__u8 passed;      /* 1: went on to the stack (a pass, or a monitored drop) */
	__u8 pad[2];
	__u8 head[XDPG_TRACE_HEAD];
};

/* Per-destination-port drop counts (per CPU; Go sums them). */
struct xdpg_port_counters {
	__u64 not_allowed;
	__u64 rate_limited;
	__u64 port_rate_limited;
	__u64 udp_not_allowed;
};

/* Per-source limiter and ban key: IPv4 as ::ffff:a.b.c.d, IPv6 as its /64
 * with the low 64 bits zero (link-local fe80::/10 sources as the whole
 * address: a /64 there is every neighbour), so the two families can never
 * collide. */
struct xdpg_src_key {
	__u32 addr[4];
};

/* Value of the per-source tables: the GCRA theoretical arrival time (or,
 * in xdpg_bans, the ban's end), in ns of ktime, and how many of the
 * source's packets that entry refused, for `xdpguard top`. */
struct xdpg_source {
	__u64 at;
	__u64 drops;
};

/* Who banned a source (struct xdpg_ban_range's origin). The data path's own
 * bans (a missed SYN rate) are in xdpg_bans, origin XDPG_BAN_LIMIT. */
enum xdpg_ban_origin {
	XDPG_BAN_LIMIT = 0,
	XDPG_BAN_CLI,
	XDPG_BAN_CROWDSEC,
	XDPG_BAN_FAIL2BAN,
	XDPG_BAN_ORIGINS,
};

/* A ban of an address or prefix written by an operator or a feed (CLI,
 * CrowdSec, fail2ban): until when (CLOCK_MONOTONIC ns), what it dropped,
 * who wrote it and why. Each origin's end is kept (until_of, 0: none), so
 * one origin's unban never lifts another's ban of the same prefix; until
 * is the latest of them, and origin the one it is from. The data path
 * reads until, bits and drops only. */
struct xdpg_ban_range {
	__u64 until;
	__u64 drops;
	__u64 until_of[XDPG_BAN_ORIGINS];
	__u8 origin; /* enum xdpg_ban_origin: whose end until is */
	__u8 bits;   /* the prefix's length, to find the next wider ban */
	char reason[46];
};

/* Why a source is protected from bans (xdpg_protected values, bits): the
 * daemon writes the peers of SSH sessions, the default gateways and the
 * resolvers; link-local sources are protected by the data path itself. */
enum xdpg_protection {
	XDPG_PROTECT_SSH = 1,
	XDPG_PROTECT_GATEWAY = 2,
	XDPG_PROTECT_RESOLVER = 4,
};

/* A word of xdpg_deny_blocks: 64 consecutive IPv4 /24 blocks, bit b of
 * each field for the block (word * 64 + b): denied whole; holding a denied
 * address (look it up in xdpg_deny_hosts); holding a denied /25-/31 (look
 * it up in the trie). Written by Go only. */
struct xdpg_deny_block {
	__u64 denied;
	__u64 hosts;
	__u64 longer;
};

/* Key of the source LPM tries (deny, trust). The family (4 or 6) comes
 * first and every prefix covers it (prefixlen = 32 + CIDR length), so an
 * IPv6 entry such as ::/0 can never match an IPv4 source. IPv4 addresses
 * sit in addr[0], the rest zero. */
struct xdpg_lpm_key {
	__u32 prefixlen;
	__u32 family;
	__u32 addr[4];
};

/* Written by the daemon after each successful switch; read by `status`. */
#define XDPG_META_MONITOR 1 /* flags: the generation only monitors */

struct xdpg_meta {
	__u32 schema_version;
	__u32 flags;
	__u64 generation;
	__u64 loaded_unix_ns;
	__u64 src_interval_ns; /* the per-source SYN limit in force (GCRA), for */
	__u64 src_limit_ns;    /* telling which sources it refuses right now */
	__u8 policy_digest[32];
	char policy_path[256]; /* the file the daemon reads, for `status` */
};

/* The clock of a test build (XDPG_TEST_CLOCK), set by the test before each
 * run: what bpf_ktime_get_ns and bpf_ktime_get_coarse_ns would return. */
struct xdpg_test_clock {
	__u64 precise;
	__u64 coarse;
};

#endif
