// SPDX-License-Identifier: GPL-2.0
/*
 * libxdp's multi-program dispatcher, version 2, written from its protocol
 * (xdp-tools lib/libxdp/protocol.org): ten stub functions prog0..prog9
 * that component programs replace with freplace, called in slot order
 * while each returns one of its chain-call actions. The configuration is
 * .rodata, so the verifier removes the unused slots; its layout, the
 * program's name and the single read-only map are how libxdp (xdp-loader,
 * xdp-filter) recognises the dispatcher and rebuilds it with its own
 * programs, and how xdpguard joins one libxdp built.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define XDP_DISPATCHER_VERSION 2
#define XDP_DISPATCHER_MAGIC 236 /* 'X' + 'D' + 'P' */
/* What an empty stub returns: the top bit of every slot's chain-call
 * bitmap, so a slot whose program went away never ends the chain. */
#define XDP_DISPATCHER_RETVAL 31
#define MAX_DISPATCHER_ACTIONS 10

struct xdp_dispatcher_config {
	__u8 magic;
	__u8 dispatcher_version;
	__u8 num_progs_enabled;
	__u8 is_xdp_frags;
	__u32 chain_call_actions[MAX_DISPATCHER_ACTIONS];
	__u32 run_prios[MAX_DISPATCHER_ACTIONS];
	__u32 program_flags[MAX_DISPATCHER_ACTIONS];
};

/* Set by the loader before the load (global, so the loader can name it):
 * const puts it in the frozen .rodata
 * (dead slots are cut), volatile keeps the compiler from folding the
 * zeroes it sees here. */
volatile const struct xdp_dispatcher_config conf = {};

/* The stubs: global, not inlined, so each keeps a BTF function freplace
 * can target; the volatile return keeps the compiler from assuming it.
 * The no-op bpf_xdp_adjust_tail marks each stub as changing packet data:
 * kernels since 6.13 (and 6.12.y) refuse to let a program that does (as
 * xdpguard's SYN proxy does) replace one that does not (libxdp 1.5.5 does
 * the same). */
#define STUB(n)                                                  \
	__attribute__((noinline)) int prog##n(struct xdp_md *ctx) \
	{                                                        \
		volatile int ret = XDP_DISPATCHER_RETVAL;        \
		if (!ctx)                                        \
			return XDP_ABORTED;                      \
		bpf_xdp_adjust_tail(ctx, 0);                     \
		return ret;                                      \
	}
STUB(0)
STUB(1)
STUB(2)
STUB(3)
STUB(4)
STUB(5)
STUB(6)
STUB(7)
STUB(8)
STUB(9)

#define SLOT(n)                                                   \
	if (num_progs_enabled < (n) + 1)                          \
		goto out;                                         \
	ret = prog##n(ctx);                                       \
	if (!((1U << ret) & conf.chain_call_actions[n]))          \
		return ret;

SEC("xdp")
int xdp_dispatcher(struct xdp_md *ctx)
{
	__u8 num_progs_enabled = conf.num_progs_enabled;
	int ret;

	SLOT(0)
	SLOT(1)
	SLOT(2)
	SLOT(3)
	SLOT(4)
	SLOT(5)
	SLOT(6)
	SLOT(7)
	SLOT(8)
	SLOT(9)
out:
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
