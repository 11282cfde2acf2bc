/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* How an event goes into its ring buffer: shared by the datapath and the floor that
 * benchmarks measure it against (empty.bpf.c), so both write the same way. */
#ifndef NETFENCE_EVENT_RING_H
#define NETFENCE_EVENT_RING_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netfence_abi.h"

/* Writes SIZE bytes of RECORD to RING (NF_EVENT_RING_BYTES long); returns the helper's result.
 * A waiting reader is woken by the record that fills a quarter of the ring, not by every record
 * that finds it caught up: its wait ends every NF_EVENT_READER_POLL_MS anyway, and the default
 * cost a wakeup (µs) per event at moderate rates, ~10 ns per event even when none waited. Only
 * the crossing wakes: a wakeup per record past it would send an interrupt for each. */
static __always_inline long nf_ring_write(void *ring, void *record, __u64 size)
{
	__u64 waiting = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	__u64 wake = waiting < NF_EVENT_RING_BYTES / 4 && waiting + size >= NF_EVENT_RING_BYTES / 4 ? BPF_RB_FORCE_WAKEUP
											      : BPF_RB_NO_WAKEUP;

	return bpf_ringbuf_output(ring, record, size, wake);
}

#endif
