/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* How an event goes into its CPU's ring (struct nf_event_ring): shared by the datapath and the
 * floor that benchmarks measure it against (empty.bpf.c), so both write the same way. */
#ifndef NETFENCE_EVENT_RING_H
#define NETFENCE_EVENT_RING_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netfence_abi.h"

/* The maps an event writer needs: RINGS, one ring per CPU (the loader sizes it to the
 * possible CPUs), and DOORBELL, which only wakes the reader. */
#define NF_EVENT_RING_MAPS(rings, doorbell)                                   \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_ARRAY);                             \
		__uint(map_flags, BPF_F_MMAPABLE);                            \
		__uint(max_entries, 1);                                       \
		__type(key, __u32);                                           \
		__type(value, struct nf_event_ring);                          \
	} rings SEC(".maps");                                                 \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                           \
		__uint(max_entries, NF_EVENT_DOORBELL_BYTES);                 \
	} doorbell SEC(".maps")

/* Where this CPU's next record of up to SIZE bytes goes (its ring in *RING), or NULL when the
 * ring has no room for it. Nothing is visible to the reader before nf_event_publish. */
static __always_inline struct nf_event *nf_event_reserve(void *rings, __u32 size, struct nf_event_ring **ring)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct nf_event_ring *own = bpf_map_lookup_elem(rings, &cpu);

	if (!own)
		return NULL;
	__u64 head = own->head, tail = *(volatile __u64 *)&own->tail;

	/* Never behind what the reader gave back. Only two writers at once leave it so (a test
	 * run, which BPF_PROG_TEST_RUN lets be preempted, and a packet on its CPU): head may go
	 * back then, and the ring would count as full for good. */
	if ((__s64)(tail - head) > 0)
		own->head = head = tail;
	if (head + size - tail > NF_EVENT_CPU_RING_BYTES)
		return NULL;
	*ring = own;
	return (struct nf_event *)&own->data[head & (NF_EVENT_CPU_RING_BYTES - 1)];
}

/* Publishes the record nf_event_reserve handed out, SIZE bytes now, at NOW (CLOCK_MONOTONIC,
 * the coarse clock the event carries; 0 wakes no reader). A sleeping reader is woken
 * by the record that fills a quarter of the ring, not by every record: its sleep ends every
 * NF_EVENT_READER_POLL_MS anyway. No wakeup when none sleeps: each is an interrupt (µs in a VM),
 * which a quarter of the ring every ~800 events would otherwise pay at any rate. */
static __always_inline void nf_event_publish(void *doorbell, struct nf_event_ring *ring, __u32 size, __u64 now)
{
	__u64 head = ring->head, waiting = head - *(volatile __u64 *)&ring->tail;

#if defined(__TARGET_ARCH_x86)
	/* x86 keeps stores in order: once the compiler keeps them so, a plain store publishes. */
	asm volatile("" ::: "memory");
	*(volatile __u64 *)&ring->head = head + size;
#else
	/* Elsewhere stores may pass each other: an exchange is a full barrier in every JIT. */
	__atomic_exchange_n(&ring->head, head + size, __ATOMIC_SEQ_CST);
#endif
	if (waiting < NF_EVENT_CPU_RING_BYTES / 4 && waiting + size >= NF_EVENT_CPU_RING_BYTES / 4 &&
	    now < *(volatile __u64 *)&ring->reader_sleeps_until) {
		__u64 wake = 1;

		bpf_ringbuf_output(doorbell, &wake, sizeof(wake), BPF_RB_FORCE_WAKEUP);
	}
}

#endif
