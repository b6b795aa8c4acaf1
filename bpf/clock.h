/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The data path's clocks. A test build (-DXDPG_TEST_CLOCK, see
 * pkg/datapath/internal/testclock) reads them from a map the test sets, so
 * limiters and bans can be driven with explicit timestamps. */
#ifndef XDPG_CLOCK_H
#define XDPG_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"
#include "maps.h"

#ifdef XDPG_TEST_CLOCK
static __always_inline __u64 test_clock(int coarse)
{
	struct xdpg_test_clock *c;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&xdpg_test_now, &zero);
	if (!c)
		return 0;
	return coarse ? c->coarse : c->precise;
}
#define clock_precise() test_clock(0)
#define clock_coarse() test_clock(1)
#else
/* CLOCK_MONOTONIC, to the nanosecond. */
#define clock_precise() bpf_ktime_get_ns()
/* CLOCK_MONOTONIC_COARSE: cheaper, but it moves once per tick (4 ms at
 * HZ=250). */
#define clock_coarse() bpf_ktime_get_coarse_ns()
#endif

#endif
