/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The SYN proxy (tcp.allow syn_proxy: always | auto): a SYN to a proxied
 * port is answered here, by XDP_TX, with a SYN-ACK whose ISN is the kernel's
 * own SYN cookie for the local listener (bpf_skc_lookup_tcp +
 * bpf_tcp_gen_syncookie, which also stamps the listener so it accepts the
 * cookie); nothing reaches the listener. The returning ACK is checked here
 * with the same secret (bpf_tcp_check_syncookie): a valid one passes and the
 * kernel's listener makes the connection from the cookie (needs
 * net.ipv4.tcp_syncookies=2 in the namespace); an invalid one to a port with
 * no connection is dropped. Window scale and SACK ride in the low 6 bits of
 * the timestamp, as the kernel encodes them; that needs
 * net.ipv4.tcp_timestamps=2 (no per-connection offset XDP cannot compute),
 * else the SYN-ACK carries MSS only. See docs/synproxy.md.
 *
 * Included by xdpguard.c after its own helpers (bit, bucket_take,
 * gcra_take, src_key_of): the hooks there are judge_syn (mark the SYN),
 * classify and fast_path (mark the ACK) and the entry (act). */
#ifndef XDPG_SYNPROXY_H
#define XDPG_SYNPROXY_H

#include <linux/tcp.h>

/* TCP option kinds (net/tcp.h, not in the uapi headers). */
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOPT_WINDOW 3
#define TCPOPT_SACK_PERM 4
#define TCPOPT_TIMESTAMP 8

/* Counters of the SYN proxy (xdpg_synproxy_stats, per CPU). */
enum xdpg_synproxy_counter {
	XDPG_SP_COOKIES_SENT = 0,   /* SYN-ACKs with a cookie sent (XDP_TX) */
	XDPG_SP_ACKS_VALID,         /* ACKs with a valid cookie: passed, the listener makes the connection */
	XDPG_SP_ACKS_INVALID,       /* ACKs to a proxied port, no connection, bad or stale cookie: dropped */
	XDPG_SP_OVER_BUDGET_SOURCE, /* SYNs not answered: over the source's SYN-ACK budget (dropped) */
	XDPG_SP_OVER_BUDGET_TOTAL,  /* SYNs not answered: over the total SYN-ACK budget (dropped) */
	XDPG_SP_NO_LISTENER,        /* SYNs to a proxied port no local socket listens on: passed */
	XDPG_SP_COOKIE_FAILED,      /* the kernel made no cookie (syncookies off, accept queue full): dropped */
	XDPG_SP_FRAGMENT,           /* fragmented SYNs to a proxied port: dropped */
	XDPG_SP_AUTO_ENGAGED,       /* times an auto port started proxying */
	XDPG_SP_PROVEN_SYNS,        /* SYNs from proven sources: charged to the per-source limits */
	XDPG_SP_TX_FAILED,          /* SYN-ACKs not built: the frame could not be resized (dropped) */
	XDPG_SP_MAX,
};

/* Per destination port state of auto (xdpg_synproxy_ports): the GCRA of
 * its SYN rate against synproxy.auto_above, and until when (ktime ns) it is
 * proxied. Shared by all CPUs. */
struct xdpg_synproxy_port {
	__u64 tat;
	__u64 engaged_until;
};

/* The SYN proxy's part of the generation's policy (set by Go). */
volatile const __u8 has_synproxy;
/* Options the namespace lets the listener negotiate (XDPG_SPO_*). */
volatile const __u8 synproxy_opts;
/* The window scale the listener will use (tcp_select_initial_window from
 * tcp_rmem[2] and rmem_max), the MSS it advertises (MTU - 40 / - 60), and
 * the SYN-ACK's (unscaled) window. */
volatile const __u8 synproxy_wscale;
volatile const __u16 synproxy_mss4;
volatile const __u16 synproxy_mss6;
volatile const __u16 synproxy_window;
/* auto: a port engages when its SYNs exceed the GCRA (interval, limit) and
 * stays engaged hold_ns after the last SYN over it. */
volatile const __u64 synproxy_auto_interval_ns;
volatile const __u64 synproxy_auto_limit_ns;
volatile const __u64 synproxy_auto_hold_ns;
/* SYN-ACK budgets (GCRA), per source and in total; interval 0: none. */
volatile const __u64 synproxy_src_interval_ns;
volatile const __u64 synproxy_src_limit_ns;
volatile const __u64 synproxy_total_interval_ns;
volatile const __u64 synproxy_total_limit_ns;
/* Ports proxied always, and ports proxied while their rate is high. */
volatile const __u64 synproxy_always_ports[XDPG_PORTS / 64];
volatile const __u64 synproxy_auto_ports[XDPG_PORTS / 64];

#define XDPG_SPO_TIMESTAMPS 1 /* tcp_timestamps == 2: options ride in TSval */
#define XDPG_SPO_SACK 2
#define XDPG_SPO_WSCALE 4

/* What verdict.synproxy asks of the entry. */
#define XDPG_SP_ACT_SYN 1
#define XDPG_SP_ACT_ACK 2

const enum xdpg_synproxy_counter *unused_sp_counter __attribute__((unused));

/* Per-CPU counters, enum xdpg_synproxy_counter. Pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDPG_SP_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_synproxy_stats SEC(".maps");

/* auto's per-port rate and engagement. Pinned: a reload keeps it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XDPG_PORTS);
	__type(key, __u32);
	__type(value, struct xdpg_synproxy_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_synproxy_ports SEC(".maps");

/* SYN-ACK budget per source (GCRA TAT), an LRU: a spoofed flood evicts its
 * own entries. */
XDPG_SOURCE_TABLE(xdpg_synproxy_budget);

/* Sources seen once, by a hash of their key: a tag per slot. A spoofed
 * flood's sources almost all send one SYN, which any burst admits: they
 * need no bucket, and inserting one for each (with an eviction once the
 * LRU is full) cost ~650 ns a SYN, half the proxy's whole cost. A source
 * gets a budget bucket at its second SYN (while its slot still holds its
 * tag), charged for both. Not pinned: a new generation starts it empty. */
#define XDPG_SP_SEEN_BITS 16
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << XDPG_SP_SEEN_BITS);
	__type(key, __u32);
	__type(value, __u32);
} xdpg_sp_seen SEC(".maps");

/* Sources that completed a cookie handshake -> when (ktime ns, in at):
 * proven to own their address. An LRU of the same key as the limiters. */
XDPG_SOURCE_TABLE(xdpg_proven);

/* The total SYN-ACK budget: one GCRA TAT. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdpg_synproxy_total SEC(".maps");

/* The seen table's hash key, random at each load (pkg/datapath): a
 * spoofer who could compute which sources share a victim's slot could
 * alternate the two, each SYN then a "first", and send the victim SYN-ACKs
 * past its budget. */
volatile const __u32 synproxy_seen_key[4];

/* Is this the source's first SYN lately? Marks it seen. (Racing CPUs may
 * both see a first: one SYN-ACK more, within the total budget.) */
static __always_inline int sp_first_sighting(struct xdpg_src_key *key)
{
	__u32 a = (key->addr[0] ^ synproxy_seen_key[0]) * 0x9e3779b1u;
	__u32 b = (key->addr[1] ^ synproxy_seen_key[1]) * 0x85ebca77u;
	__u32 c = (key->addr[2] ^ synproxy_seen_key[2]) * 0xc2b2ae3du;
	__u32 d = (key->addr[3] ^ synproxy_seen_key[3]) * 0x27d4eb2fu;
	/* Mixed in sequence (not a plain xor of the four), so no input
	 * word's effect on the slot is independent of the others'. */
	__u32 h = a;

	h = (h ^ (h >> 15)) * 0x2c1b3c6du ^ b;
	h = (h ^ (h >> 12)) * 0x297a2d39u ^ c;
	h = (h ^ (h >> 15)) * 0x2c1b3c6du ^ d;
	h ^= h >> 16;
	__u32 slot = h >> (32 - XDPG_SP_SEEN_BITS), tag = h | 1;
	__u32 *seen = bpf_map_lookup_elem(&xdpg_sp_seen, &slot);

	if (!seen || *seen == tag)
		return 0;
	*seen = tag;
	return 1;
}

/* Take a SYN-ACK from the source's budget: a source with a bucket is
 * always charged; a first SYN is within any burst (>= 1) and takes no
 * bucket; the second creates the bucket with the first's token taken, then
 * takes its own. */
static __always_inline int sp_budget_take(struct xdpg_src_key *key, __u64 *now)
{
	struct xdpg_source *src = bpf_map_lookup_elem(&xdpg_synproxy_budget, key);

	if (!src) {
		struct xdpg_source first = { .at = *now + synproxy_src_interval_ns };

		if (sp_first_sighting(key))
			return 1;
		bpf_map_update_elem(&xdpg_synproxy_budget, key, &first, BPF_NOEXIST);
		src = bpf_map_lookup_elem(&xdpg_synproxy_budget, key);
		if (!src)
			return 1; /* table busy: fail open (the total budget holds) */
	}
	if (gcra_take(&src->at, now, synproxy_src_interval_ns, synproxy_src_limit_ns, 1))
		return 1;
	__sync_fetch_and_add(&src->drops, 1);
	return 0;
}

static __always_inline void sp_count(__u32 idx)
{
	__u64 *cnt = bpf_map_lookup_elem(&xdpg_synproxy_stats, &idx);

	if (cnt)
		*cnt += 1;
}

/* Is port proxied by either mode? (ACKs are checked on both.) */
static __always_inline int synproxy_port(__u16 port)
{
	return bit(synproxy_always_ports, port) || bit(synproxy_auto_ports, port);
}

/* An ACK that could complete a handshake to a proxied port. */
static __always_inline int synproxy_ack_candidate(__u8 flags, __u16 dport)
{
	return (flags & (XDPG_TCP_ACK | XDPG_TCP_SYN | XDPG_TCP_RST)) == XDPG_TCP_ACK && synproxy_port(dport);
}

/* Should this SYN (its port admitted by a rule) be answered here? always:
 * yes; auto: while the port's SYN rate is over synproxy.auto_above, and
 * synproxy.auto_hold after the last SYN over it (the hysteresis). Every SYN
 * to an auto port is measured, engaged or not. */
static __always_inline int synproxy_wants(__u16 dport)
{
	struct xdpg_synproxy_port *st;
	__u32 idx = port_index(dport);
	__u64 now;

	if (bit(synproxy_always_ports, dport))
		return 1;
	if (!bit(synproxy_auto_ports, dport))
		return 0;
	st = bpf_map_lookup_elem(&xdpg_synproxy_ports, &idx);
	if (!st)
		return 0;
	now = clock_coarse();
	if (!gcra_take(&st->tat, &now, synproxy_auto_interval_ns, synproxy_auto_limit_ns, 0)) {
		__u64 until = now + synproxy_auto_hold_ns, was = st->engaged_until;

		if (was <= now)
			sp_count(XDPG_SP_AUTO_ENGAGED);
		if (was < until)
			st->engaged_until = until;
		return 1;
	}
	return st->engaged_until > now;
}

/* Has the source completed a cookie handshake? Its SYNs then meet the
 * per-source limits and bans as on any port; an unproven source's do not,
 * so spoofed SYNs can neither spend a real source's budget nor get it
 * banned. */
static __always_inline int synproxy_proven(struct xdpg_src_key *key)
{
	if (bpf_map_lookup_elem(&xdpg_proven, key)) {
		sp_count(XDPG_SP_PROVEN_SYNS);
		return 1;
	}
	return 0;
}

/* Where the IP header starts: after Ethernet and up to two VLAN tags
 * (parse_eth accepted the frame already). */
static __always_inline __u32 sp_l3_off(void *data, void *data_end)
{
	__u8 *p = data;
	__u32 off = 14;

	if ((void *)(p + 22) > data_end)
		return 14;
	if ((p[12] == 0x81 && p[13] == 0x00) || (p[12] == 0x88 && p[13] == 0xa8)) {
		off = 18;
		if ((p[16] == 0x81 && p[17] == 0x00) || (p[16] == 0x88 && p[17] == 0xa8))
			off = 22;
	}
	return off;
}

/* The options of a SYN the proxy needs. */
struct sp_syn_opts {
	__u32 tsval;
	__u16 mss;
	__u8 wscale;
	__u8 flags; /* XDPG_SPO_* the client offered */
};

/* The state of sp_parse_opts's loop. */
struct sp_opts_walk {
	struct xdp_md *ctx;
	__u32 off, end;
	struct sp_syn_opts o;
};

/* One option at w->off; 1 ends the walk. A bpf_loop callback: the
 * verifier checks it once, not once per iteration of a 40-byte walk. */
static long sp_opt_step(__u32 i, void *arg)
{
	struct sp_opts_walk *w = arg;
	void *data = (void *)(long)w->ctx->data;
	void *data_end = (void *)(long)w->ctx->data_end;
	__u32 off = w->off;
	__u8 *p;
	__u8 kind, len;

	if (off >= w->end || off > XDPG_MAX_HDR_OFF)
		return 1;
	off &= 0x1fff;
	p = data + off;
	if ((void *)(p + 1) > data_end)
		return 1;
	kind = p[0];
	if (kind == TCPOPT_EOL)
		return 1;
	if (kind == TCPOPT_NOP) {
		w->off = off + 1;
		return 0;
	}
	if ((void *)(p + 2) > data_end)
		return 1;
	len = p[1];
	if (len < 2 || off + len > w->end)
		return 1;
	if (kind == TCPOPT_MSS && len == 4 && (void *)(p + 4) <= data_end) {
		w->o.mss = ((__u16)p[2] << 8) | p[3];
	} else if (kind == TCPOPT_WINDOW && len == 3 && (void *)(p + 3) <= data_end) {
		w->o.wscale = p[2] > 14 ? 14 : p[2];
		w->o.flags |= XDPG_SPO_WSCALE;
	} else if (kind == TCPOPT_SACK_PERM && len == 2) {
		w->o.flags |= XDPG_SPO_SACK;
	} else if (kind == TCPOPT_TIMESTAMP && len == 10 && (void *)(p + 6) <= data_end) {
		w->o.tsval = ((__u32)p[2] << 24) | ((__u32)p[3] << 16) | ((__u32)p[4] << 8) | p[5];
		w->o.flags |= XDPG_SPO_TIMESTAMPS;
	}
	w->off = off + len;
	return 0;
}

/* Parse the TCP options of the SYN at [off, end) of the frame, as the
 * kernel's tcp_parse_options would for the fields the proxy uses (at most
 * 40 bytes, so 40 steps). */
static __always_inline void sp_parse_opts(struct xdp_md *ctx, __u32 off, __u32 end, struct sp_syn_opts *o)
{
	struct sp_opts_walk w = { .ctx = ctx, .off = off, .end = end };

	bpf_loop(40, sp_opt_step, &w, 0);
	*o = w.o;
}

static __always_inline void sp_put16(__u8 *b, __u32 off, __u16 v)
{
	b[off] = v >> 8;
	b[off + 1] = v;
}

static __always_inline void sp_put32(__u8 *b, __u32 off, __u32 v)
{
	b[off] = v >> 24;
	b[off + 1] = v >> 16;
	b[off + 2] = v >> 8;
	b[off + 3] = v;
}

/* The one's complement sum of n bytes (n even, a constant at each call:
 * the loop unrolls) of a stack buffer. */
static __always_inline __u32 sp_sum(const __u8 *b, const __u32 n, __u32 sum)
{
#pragma unroll
	for (__u32 i = 0; i < n; i += 2)
		sum += ((__u32)b[i] << 8) | b[i + 1];
	return sum;
}

static __always_inline __u16 sp_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* The addresses and ports of a segment, in the form the socket helpers
 * take, and stack copies of its IP header for them (they read the
 * addresses and the version). */
struct sp_flow {
	struct bpf_sock_tuple t;
	__u8 ip[40];
	__u32 tuple_len, ip_len;
};

/* Per-CPU scratch of synproxy_syn and synproxy_ack: their buffers would
 * not fit the stack beside the entry's (512 bytes for all frames). */
struct sp_scratch {
	struct sp_flow f;
	__u8 th[24];
	__u8 b[80];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sp_scratch);
} xdpg_sp_scratch SEC(".maps");

static __always_inline struct sp_scratch *sp_scratch(void)
{
	__u32 zero = 0;
	struct sp_scratch *s = bpf_map_lookup_elem(&xdpg_sp_scratch, &zero);

	if (s)
		__builtin_memset(s, 0, sizeof(*s));
	return s;
}

static __always_inline int sp_flow_of(void *data, void *data_end, __u32 l3, struct l4_info *l4, __u8 *tcp,
				      struct sp_flow *f)
{
	__u8 *ip;

	__builtin_memset(f, 0, sizeof(*f));
	l3 &= 0x1f;
	ip = data + l3;
	if (l4->is_v6) {
		if ((void *)(ip + 40) > data_end)
			return -1;
		__builtin_memcpy(f->t.ipv6.saddr, ip + 8, 16);
		__builtin_memcpy(f->t.ipv6.daddr, ip + 24, 16);
		__builtin_memcpy(&f->t.ipv6.sport, tcp, 2);
		__builtin_memcpy(&f->t.ipv6.dport, tcp + 2, 2);
		f->ip[0] = 0x60;
		__builtin_memcpy(f->ip + 8, ip + 8, 32);
		f->tuple_len = sizeof(f->t.ipv6);
		f->ip_len = 40;
	} else {
		if ((void *)(ip + 20) > data_end)
			return -1;
		__builtin_memcpy(&f->t.ipv4.saddr, ip + 12, 4);
		__builtin_memcpy(&f->t.ipv4.daddr, ip + 16, 4);
		__builtin_memcpy(&f->t.ipv4.sport, tcp, 2);
		__builtin_memcpy(&f->t.ipv4.dport, tcp + 2, 2);
		f->ip[0] = 0x45;
		f->ip[9] = IPPROTO_TCP;
		__builtin_memcpy(f->ip + 12, ip + 12, 8);
		f->tuple_len = sizeof(f->t.ipv4);
		f->ip_len = 20;
	}
	return 0;
}

/* The local listener of the flow, or NULL (the caller releases it). A
 * socket of the 4-tuple (established, time-wait, request) is not one. */
static __always_inline struct bpf_sock *sp_listener(struct xdp_md *ctx, struct sp_flow *f, int *other)
{
	struct bpf_sock *sk;

	*other = 0;
	/* Constant sizes, as the verifier wants them. */
	if (f->ip_len == 40)
		sk = bpf_skc_lookup_tcp(ctx, &f->t, sizeof(f->t.ipv6), BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_skc_lookup_tcp(ctx, &f->t, sizeof(f->t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return NULL;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		*other = 1;
		return NULL;
	}
	return sk;
}

/* An ACK to a proxied port: a segment of a connection passes; one that
 * meets only the listener must carry a valid cookie (the kernel's check,
 * the kernel's secret), else it is dropped. A valid one proves the source. */
__noinline int synproxy_ack(struct xdp_md *ctx, struct l4_info *l4)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct hdr_cursor c = {};
	struct xdpg_source proven = {};
	struct xdpg_src_key key;
	struct sp_scratch *s = sp_scratch();
	struct bpf_sock *sk;
	__u8 *tcp;
	int other;
	long ok;

	/* First: a kernel that verifies global functions whether called or
	 * not (6.1) then prunes the rest when the proxy is off. */
	if (!has_synproxy || !l4 || !s)
		return XDP_PASS;
	c.off = l4->l4_off;
	tcp = cursor_ptr(data, &c, 20, data_end);
	if (!tcp)
		return XDP_PASS;
	if (sp_flow_of(data, data_end, sp_l3_off(data, data_end), l4, tcp, &s->f))
		return XDP_PASS;
	__builtin_memcpy(s->th, tcp, 20);
	sk = sp_listener(ctx, &s->f, &other);
	if (!sk)
		return XDP_PASS; /* a connection's segment, or no listener: the kernel's */
	if (s->f.ip_len == 40)
		ok = bpf_tcp_check_syncookie(sk, s->f.ip, 40, (struct tcphdr *)s->th, 20);
	else
		ok = bpf_tcp_check_syncookie(sk, s->f.ip, 20, (struct tcphdr *)s->th, 20);
	bpf_sk_release(sk);
	if (ok != 0) {
		sp_count(XDPG_SP_ACKS_INVALID);
		return XDP_DROP;
	}
	sp_count(XDPG_SP_ACKS_VALID);
	src_key_of(l4, &key);
	proven.at = bpf_ktime_get_ns();
	bpf_map_update_elem(&xdpg_proven, &key, &proven, BPF_ANY);
	return XDP_PASS;
}

/* Write the reply's IP and TCP headers into b: addresses and ports of the
 * SYN swapped, ISN = cookie, the options the cookie can carry. Returns the
 * bytes written (IP + TCP). */
static __always_inline __u32 sp_build(__u8 *b, struct sp_flow *f, int v6, __u32 seq, __u32 cookie,
				      __u16 sport, __u16 dport, struct sp_syn_opts *o)
{
	__u32 l3len = v6 ? 40 : 20, tcplen, sum = 0;
	__u8 *t;
	int ts = (o->flags & XDPG_SPO_TIMESTAMPS) && (synproxy_opts & XDPG_SPO_TIMESTAMPS);

	tcplen = ts ? 40 : 24;
	t = b + (v6 ? 40 : 20);
	/* TCP */
	sp_put16(t, 0, dport);
	sp_put16(t, 2, sport);
	sp_put32(t, 4, cookie);
	sp_put32(t, 8, seq + 1);
	t[12] = (tcplen / 4) << 4;
	t[13] = XDPG_TCP_SYN | XDPG_TCP_ACK;
	sp_put16(t, 14, synproxy_window);
	t[20] = TCPOPT_MSS;
	t[21] = 4;
	sp_put16(t, 22, v6 ? synproxy_mss6 : synproxy_mss4);
	if (ts) {
		/* As cookie_init_timestamp: wscale (0xf: none) and SACK in the
		 * low 6 bits of a TSval of the kernel's TCP clock (ms of
		 * CLOCK_MONOTONIC), never ahead of it. */
		int sack = (o->flags & XDPG_SPO_SACK) && (synproxy_opts & XDPG_SPO_SACK);
		int ws = (o->flags & XDPG_SPO_WSCALE) && (synproxy_opts & XDPG_SPO_WSCALE);
		__u32 now = bpf_ktime_get_ns() / 1000000;
		__u32 bits = (ws ? o->wscale : 0xf) | (sack ? 0x10 : 0);
		__u32 tsval = (now & ~0x3fU) | bits;

		if (tsval > now)
			tsval -= 64;
		t[24] = sack ? TCPOPT_SACK_PERM : TCPOPT_NOP;
		t[25] = sack ? 2 : TCPOPT_NOP;
		t[26] = TCPOPT_TIMESTAMP;
		t[27] = 10;
		sp_put32(t, 28, tsval);
		sp_put32(t, 32, o->tsval);
		t[36] = TCPOPT_NOP;
		t[37] = ws ? TCPOPT_WINDOW : TCPOPT_NOP;
		t[38] = ws ? 3 : TCPOPT_NOP;
		t[39] = ws ? synproxy_wscale : TCPOPT_NOP;
	}
	/* IP, and the pseudo-header's sum */
	if (v6) {
		b[0] = 0x60;
		sp_put16(b, 4, tcplen);
		b[6] = IPPROTO_TCP;
		b[7] = 64;
		__builtin_memcpy(b + 8, f->ip + 24, 16);
		__builtin_memcpy(b + 24, f->ip + 8, 16);
		sum = sp_sum(b + 8, 32, 0);
	} else {
		b[0] = 0x45;
		sp_put16(b, 2, 20 + tcplen);
		b[6] = 0x40; /* DF */
		b[8] = 64;
		b[9] = IPPROTO_TCP;
		__builtin_memcpy(b + 12, f->ip + 16, 4);
		__builtin_memcpy(b + 16, f->ip + 12, 4);
		sp_put16(b, 10, sp_fold(sp_sum(b, 20, 0)));
		sum = sp_sum(b + 12, 8, 0);
	}
	sum += IPPROTO_TCP + tcplen;
	sp_put16(t, 16, sp_fold(ts ? sp_sum(t, 40, sum) : sp_sum(t, 24, sum)));
	return l3len + tcplen;
}

/* Copy n (one of the four reply sizes) bytes of b to the frame at l3. */
static __always_inline int sp_write(struct xdp_md *ctx, __u32 l3, __u8 *b, __u32 n)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 mac[6];
	__u8 *p;

	l3 &= 0x1f;
	p = data + l3;
	if ((void *)(p + 44) > data_end || (void *)((__u8 *)data + 12) > data_end)
		return -1;
	if (n == 44) {
		__builtin_memcpy(p, b, 44);
	} else if (n == 60) {
		if ((void *)(p + 60) > data_end)
			return -1;
		__builtin_memcpy(p, b, 60);
	} else if (n == 64) {
		if ((void *)(p + 64) > data_end)
			return -1;
		__builtin_memcpy(p, b, 64);
	} else {
		if ((void *)(p + 80) > data_end)
			return -1;
		__builtin_memcpy(p, b, 80);
	}
	/* The MACs swapped; VLAN tags stay where they are. */
	p = data;
	__builtin_memcpy(mac, p, 6);
	__builtin_memcpy(p, p + 6, 6);
	__builtin_memcpy(p + 6, mac, 6);
	return 0;
}

/* A SYN to a proxied port, its policy checks passed: answer it within the
 * budgets with the listener's cookie, in place. */
__noinline int synproxy_syn(struct xdp_md *ctx, struct l4_info *l4)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct hdr_cursor c = {};
	struct sp_syn_opts o = {};
	struct xdpg_src_key key;
	struct sp_scratch *s = sp_scratch();
	__u32 l3, doff, seq, n;
	__u16 sport, dport;
	__u64 flen;
	struct bpf_sock *sk;
	__u64 now;
	__s64 cookie;
	__u8 *tcp;
	int other;

	if (!has_synproxy)
		return XDP_PASS; /* see synproxy_ack */
	if (!l4 || !s)
		return XDP_DROP;
	c.off = l4->l4_off;
	if (l4->first_frag) {
		sp_count(XDPG_SP_FRAGMENT);
		return XDP_DROP;
	}
	tcp = cursor_ptr(data, &c, 20, data_end);
	if (!tcp)
		return XDP_DROP;
	doff = (tcp[12] >> 4) * 4;
	sport = ((__u16)tcp[0] << 8) | tcp[1];
	dport = ((__u16)tcp[2] << 8) | tcp[3];
	seq = ((__u32)tcp[4] << 24) | ((__u32)tcp[5] << 16) | ((__u32)tcp[6] << 8) | tcp[7];
	__builtin_memcpy(s->th, tcp, 20);
	l3 = sp_l3_off(data, data_end);
	if (sp_flow_of(data, data_end, l3, l4, tcp, &s->f))
		return XDP_DROP;

	/* The budgets first: over them costs no socket lookup. */
	if (synproxy_total_interval_ns) {
		__u32 zero = 0;
		__u64 *tat = bpf_map_lookup_elem(&xdpg_synproxy_total, &zero);

		now = clock_coarse();
		if (tat && !gcra_take(tat, &now, synproxy_total_interval_ns, synproxy_total_limit_ns, 0)) {
			sp_count(XDPG_SP_OVER_BUDGET_TOTAL);
			return XDP_DROP;
		}
	}
	if (synproxy_src_interval_ns) {
		src_key_of(l4, &key);
		now = clock_coarse();
		if (!sp_budget_take(&key, &now)) {
			sp_count(XDPG_SP_OVER_BUDGET_SOURCE);
			return XDP_DROP;
		}
	}

	sp_parse_opts(ctx, l4->l4_off + 20, l4->l4_off + doff, &o);
	sk = sp_listener(ctx, &s->f, &other);
	if (!sk) {
		if (!other)
			sp_count(XDPG_SP_NO_LISTENER);
		return XDP_PASS; /* no listener here (forwarded?), or a connection's SYN */
	}
	/* The kernel reads only the addresses, ports, sequence and MSS of
	 * the SYN: a header with the MSS option alone stands for it. */
	s->th[12] = o.mss ? 0x60 : 0x50;
	s->th[13] = XDPG_TCP_SYN;
	if (o.mss) {
		s->th[20] = TCPOPT_MSS;
		s->th[21] = 4;
		sp_put16(s->th, 22, o.mss);
	}
	if (s->f.ip_len == 40)
		cookie = o.mss ? bpf_tcp_gen_syncookie(sk, s->f.ip, 40, (struct tcphdr *)s->th, 24)
			       : bpf_tcp_gen_syncookie(sk, s->f.ip, 40, (struct tcphdr *)s->th, 20);
	else
		cookie = o.mss ? bpf_tcp_gen_syncookie(sk, s->f.ip, 20, (struct tcphdr *)s->th, 24)
			       : bpf_tcp_gen_syncookie(sk, s->f.ip, 20, (struct tcphdr *)s->th, 20);
	bpf_sk_release(sk);
	if (cookie < 0) {
		sp_count(XDPG_SP_COOKIE_FAILED);
		return XDP_DROP;
	}

	n = sp_build(s->b, &s->f, l4->is_v6, seq, (__u32)cookie, sport, dport, &o);
	/* 64-bit, behind a barrier: clang would narrow the pointer
	 * difference to 32 bits, which the verifier refuses. */
	flen = (__u64)(data_end - data);
	barrier_var(flen);
#ifdef XDPG_FIXED_LENGTH
	/* The build for libxdp dispatcher slots (pkg/datapath/internal/
	 * component) must not change a frame's length, and is never loaded
	 * with syn_proxy: this is not reached. */
	(void)n;
	sp_count(XDPG_SP_TX_FAILED);
	return XDP_DROP;
#else
	if (bpf_xdp_adjust_tail(ctx, (int)(l3 + n) - (int)flen) ||
	    sp_write(ctx, l3, s->b, n)) {
		sp_count(XDPG_SP_TX_FAILED);
		return XDP_DROP;
	}
#endif
	sp_count(XDPG_SP_COOKIES_SENT);
	return XDP_TX;
}

/* An ACK the fast path passed (untagged IPv4 without options): checked as
 * classify would have marked it, without the general path. */
__noinline int synproxy_fast_ack(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *ip = data + 14, *tcp = data + 34;
	struct l4_info l4 = { .proto = IPPROTO_TCP, .l4_off = 34 };

	if (!has_synproxy || (void *)(tcp + 20) > data_end || monitor)
		return XDP_PASS; /* has_synproxy: see synproxy_ack */
	if (!synproxy_ack_candidate(tcp[13], ((__u16)tcp[2] << 8) | tcp[3]))
		return XDP_PASS;
	l4.saddr[2] = bpf_htonl(0x0000ffff);
	__builtin_memcpy(&l4.saddr[3], ip + 12, 4);
	return synproxy_ack(ctx, &l4);
}

/* What the entry does with a packet judge_syn or classify marked. */
static __always_inline int synproxy_act(struct xdp_md *ctx, struct l4_info *l4, __u8 act)
{
	if (monitor)
		return XDP_PASS;
	if (act == XDPG_SP_ACT_SYN)
		return synproxy_syn(ctx, l4);
	return synproxy_ack(ctx, l4);
}

#endif
