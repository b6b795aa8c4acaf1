/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* State maps. All are pinned by name in the interface's pin directory, so a
 * new program generation (policy reload, daemon restart, upgrade) reuses
 * them: counters never reset and limiter budgets carry over. The policy
 * itself is not in a map: it is compiled into each generation's .rodata. */
#ifndef XDPG_MAPS_H
#define XDPG_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"

#define XDPG_PORTS 65536

/* Packets per reason, per CPU. Written by XDP, summed by Go. Entries from
 * XDPG_REASON_MAX on count drops that monitor mode let through. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * XDPG_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_stats SEC(".maps");

/* Drops per destination port, per CPU. Written by XDP, summed by Go. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDPG_PORTS);
	__type(key, __u32);
	__type(value, struct xdpg_port_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_port_drops SEC(".maps");

/* A pinned per-source table: struct xdpg_src_key (IPv4 /32, IPv6 /64) to
 * struct xdpg_source, an LRU so a spoofed flood cannot grow it. */
#define XDPG_SOURCE_TABLE(name)                             \
	struct {                                            \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);        \
		__uint(max_entries, 65536);                 \
		__type(key, struct xdpg_src_key);           \
		__type(value, struct xdpg_source);          \
		__uint(pinning, LIBBPF_PIN_BY_NAME);        \
	} name SEC(".maps")

/* GCRA theoretical arrival time of SYNs per source. Shared by all CPUs and
 * updated with compare-and-swap; max_entries comes from the policy. */
XDPG_SOURCE_TABLE(xdpg_src_buckets);

/* GCRA theoretical arrival time of ICMP/ICMPv6 echo requests per source
 * (icmp.echo). */
XDPG_SOURCE_TABLE(xdpg_icmp_buckets);

/* Banned sources -> ban expiry. Written by XDP when a source exceeds its SYN
 * rate and ratelimit.syn.ban is set; expired entries are deleted by XDP
 * itself and swept by the daemon; `xdpguard unban` deletes. A plain hash,
 * not an LRU: a spray of spoofed sources must not evict a real offender's
 * ban. When it is full, new bans are counted (XDPG_HEALTH_BANS_NOT_STORED),
 * not stored. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct xdpg_src_key);
	__type(value, struct xdpg_source);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_bans SEC(".maps");

/* Bans of addresses and prefixes written by operators and feeds (`xdpguard
 * ban`, CrowdSec, fail2ban): struct xdpg_lpm_key -> struct xdpg_ban_range,
 * looked up where a ban applies. Written by Go only, read and counted by XDP;
 * an ended entry is ignored, and swept by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1048576);
	__type(key, struct xdpg_lpm_key);
	__type(value, struct xdpg_ban_range);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_ban_ranges SEC(".maps");

/* Sources never banned (by their xdpg_src_key) -> enum xdpg_protection
 * bits. Written by the daemon (SSH peers, gateways, resolvers), read by XDP
 * only when it is about to ban. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct xdpg_src_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_protected SEC(".maps");

/* GCRA theoretical arrival time per destination port, all sources together. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XDPG_PORTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_port_buckets SEC(".maps");

/* Source lists of the generation in force: created, filled and frozen by Go
 * for each generation (never pinned), so they switch with the program.
 * Looked up only when the list is non-empty (has_deny, has_trust). */
/* A source trie of the generation in force. max_entries is set by Go. */
#define XDPG_SOURCE_TRIE(name, value_type)                             \
	struct {                                                       \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                   \
		__uint(max_entries, 1);                                \
		__type(key, struct xdpg_lpm_key);                      \
		__type(value, value_type);                             \
		__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG); \
	} name SEC(".maps")

XDPG_SOURCE_TRIE(xdpg_deny, __u8);
XDPG_SOURCE_TRIE(xdpg_trust, __u8);

/* sources.deny split by what is cheapest to fill and to look up (a
 * million-entry blocklist fills a trie in seconds): IPv4 prefixes of /24
 * or wider as one bit per /24 block, 2^24 bits in 2^18 words
 * (xdpg_deny_blocks, struct xdpg_deny_block, whose other bits mark the
 * blocks holding a longer entry); IPv4 addresses in a hash
 * (xdpg_deny_hosts, keyed by the address as in the packet); the rest, IPv4
 * /25 to /31 and IPv6, in xdpg_deny. Each is per generation like the
 * tries; Go sizes a list not in use to one entry (has_deny_blocks,
 * has_deny_hosts). See deny.h. */
#define XDPG_DENY_BLOCK_WORDS (1 << 18)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdpg_deny_block);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xdpg_deny_blocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xdpg_deny_hosts SEC(".maps");

/* Source-scoped port rules of the generation in force (per generation,
 * frozen, never pinned, like the source lists): the source's longest
 * matching rule prefix gives a group; xdpg_group_ports holds each group's
 * 65536-bit TCP then UDP port bitmaps as 1024 words each, at
 * group * 2048 + (udp ? 1024 : 0) + port / 64. */
XDPG_SOURCE_TRIE(xdpg_scoped_src, __u32);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2048);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} xdpg_group_ports SEC(".maps");

/* Packets per rule slot (enum xdpg_rule_slot), per CPU, and the slots'
 * names: pinned, so a rule's counters live as long as its name. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDPG_RULE_MAX);
	__type(key, __u32);
	__type(value, struct xdpg_rule_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XDPG_RULE_MAX);
	__type(key, __u32);
	__type(value, struct xdpg_rule_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_rule_names SEC(".maps");

/* Per generation: the rule slot that opens a port to a scoped group. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__type(key, struct xdpg_group_rule_key);
	__type(value, __u16);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG);
} xdpg_group_rule SEC(".maps");

/* Data path health counters (enum xdpg_health_counter), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDPG_HEALTH_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_health SEC(".maps");

/* Sampled drop events for the daemon (--events), within the budget set in
 * xdpg_event_config. Pinned, so events flow across program generations. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdpg_event_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_event_config SEC(".maps");

/* One entry describing the generation in force. Written by Go only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdpg_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_generation SEC(".maps");

#ifdef XDPG_TEST_CLOCK
/* Test builds only: the clock, set by the test (see clock.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdpg_test_clock);
} xdpg_test_now SEC(".maps");
#endif

#endif
