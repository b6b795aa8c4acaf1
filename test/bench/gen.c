//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark helpers (not part of xdpguard): rewrite the IPv4 source of a
 * SYN frame from a counter, so each run or generated frame comes from the
 * next of src_count sources, keeping the IP and TCP checksums valid (the
 * stack checks them behind nftables' ingress hook, the SYN proxy before it
 * answers). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

volatile const __u32 src_base;  /* host order */
volatile const __u32 src_count; /* 0: leave the source as it is */
/* Where the IPv4 header starts (14, or 22 behind two VLAN tags). */
volatile const __u32 ip_off = sizeof(struct ethhdr);
/* Non-zero: visit the sources in a scrambled order (src_count a power of
 * two), so consecutive frames come from unrelated addresses and blocks. */
volatile const __u8 src_scramble;

__u32 counter;

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* RFC 1624 incremental update of the IPv4 header checksum. */
static __always_inline void next_source(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + (ip_off & 63);
	__u32 old, new, sum, n;

	if (!src_count || (void *)(ip + 1) > data_end)
		return;
	old = ip->saddr;
	n = __sync_fetch_and_add(&counter, 1);
	if (src_scramble)
		n *= 2654435761u; /* odd: a permutation modulo any power of two */
	new = bpf_htonl(src_base + (n % src_count));
	sum = (__u16)~ip->check;
	sum += (__u16)~old + (__u16)~(old >> 16);
	sum += (__u16)new + (__u16)(new >> 16);
	ip->saddr = new;
	ip->check = csum_fold(sum);
	/* The TCP checksum covers the source through the pseudo-header: a
	 * stale one makes the kernel (and the SYN proxy) discard the frame
	 * as corrupt rather than handle it as the SYN it stands for. */
	__u8 *tcp = (__u8 *)(ip + 1);
	if (ip->ihl == 5 && ip->protocol == 6 && (void *)(tcp + 18) <= data_end) {
		__u16 *check = (__u16 *)(tcp + 16);
		sum = (__u16)~*check;
		sum += (__u16)~old + (__u16)~(old >> 16);
		sum += (__u16)new + (__u16)(new >> 16);
		*check = csum_fold(sum);
	}
}

/* The frame, when the filter answers in place: the SYN proxy's XDP_TX
 * turns a SYN into its SYN-ACK in the generator's own page (veth hands
 * frames over without a copy), and the page comes back to the live-frames
 * pool holding the answer. With tmpl_len set, each frame is rewritten from
 * the template before it goes out. */
#define TMPL_MAX 128
volatile const __u32 tmpl_len; /* 0: frames go out as the test run made them */
volatile const __u8 tmpl[TMPL_MAX];

static __always_inline int restore(struct xdp_md *ctx)
{
	__u32 want = tmpl_len & (TMPL_MAX - 1), have = ctx->data_end - ctx->data;
	__u8 *data, *data_end;

	if (have != want && bpf_xdp_adjust_tail(ctx, (int)want - (int)have))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	for (int i = 0; i < TMPL_MAX; i++) {
		if (i >= want || data + i + 1 > data_end)
			break;
		data[i] = tmpl[i];
	}
	return 0;
}

/* For BPF_PROG_RUN: a new source, then the program under test. */
SEC("xdp")
int mutate_then_call(struct xdp_md *ctx)
{
	if (tmpl_len && restore(ctx)) /* the program under test answers in place */
		return XDP_ABORTED;
	next_source(ctx);
	bpf_tail_call(ctx, &target, 0);
	return XDP_ABORTED;
}

/* For live frames: a new source, then out of the veth to its peer. */
SEC("xdp")
int generate(struct xdp_md *ctx)
{
	if (tmpl_len && restore(ctx))
		return XDP_DROP;
	next_source(ctx);
	return XDP_TX;
}

/* The floor for any filter: a trivial drop that, as a filter must, reads
 * the TCP header (a frame's first cache line, written by the generator's
 * CPU) before it decides. Plain IPv4 only: the generator sends nothing else. */
SEC("xdp")
int read_then_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *tcp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);

	if ((void *)(tcp + 14) > data_end)
		return XDP_PASS;
	return (tcp[13] & 0x02) && (tcp[2] | tcp[3]) ? XDP_DROP : XDP_PASS;
}

/* Keeps the generator veth's rx queue registered (live frames need it),
 * and drops there the SYN-ACKs answering the flood (IPv4 TCP to
 * 100.64.0.0/10, the flood's sources): a NIC would put them on the wire,
 * but on veth they come back in on the filter's CPU, and the stack's work
 * for them would be charged to the filter. The client's traffic passes. */
SEC("xdp")
int pass(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	__u8 *tcp = (__u8 *)(ip + 1);

	if ((void *)(tcp + 14) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != 6 || ip->ihl != 5)
		return XDP_PASS;
	if ((bpf_ntohl(ip->daddr) & 0xffc00000) == 0x64400000 && (tcp[13] & 0x12) == 0x12)
		return XDP_DROP;
	return XDP_PASS;
}


/* The SYN proxy's parts, for -only spcost: a SYN at fixed offsets (plain
 * IPv4, TCP with options) from a new source each run (src_count), each
 * program doing one more of what the proxy does per SYN and then dropping,
 * so BPF_PROG_RUN can repeat it on the same frame. */
static __always_inline int sp_parts(struct xdp_md *ctx, int lookup, int cookie, int raw)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *th = (void *)(ip + 1);
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__s64 c = 0;

	if ((void *)(th + 1) > data_end || (void *)((__u8 *)th + 40) > data_end)
		return XDP_PASS;
	next_source(ctx); /* a new source each run, as a spoofed flood's */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip = data + sizeof(struct ethhdr);
	th = (void *)(ip + 1);
	if ((void *)(th + 1) > data_end || (void *)((__u8 *)th + 40) > data_end)
		return XDP_PASS;
	if (raw) {
		c = bpf_tcp_raw_gen_syncookie_ipv4(ip, th, 40);
		return c < 0 ? XDP_ABORTED : XDP_DROP;
	}
	if (!lookup)
		return XDP_DROP;
	t.ipv4.saddr = ip->saddr;
	t.ipv4.daddr = ip->daddr;
	t.ipv4.sport = th->source;
	t.ipv4.dport = th->dest;
	sk = bpf_skc_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return XDP_ABORTED;
	if (cookie)
		c = bpf_tcp_gen_syncookie(sk, ip, 20, th, 40);
	bpf_sk_release(sk);
	return c < 0 ? XDP_ABORTED : XDP_DROP;
}

SEC("xdp")
int sp_parse_only(struct xdp_md *ctx) { return sp_parts(ctx, 0, 0, 0); }
SEC("xdp")
int sp_lookup(struct xdp_md *ctx) { return sp_parts(ctx, 1, 0, 0); }
SEC("xdp")
int sp_lookup_cookie(struct xdp_md *ctx) { return sp_parts(ctx, 1, 1, 0); }
SEC("xdp")
int sp_raw_cookie(struct xdp_md *ctx) { return sp_parts(ctx, 0, 0, 1); }

char __license[] SEC("license") = "GPL"; /* the socket helpers are GPL-only */
