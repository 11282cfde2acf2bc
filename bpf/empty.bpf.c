// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Floors for benchmarks, measured beside the datapath in the same run: a tc
 * program that does nothing, and one that only writes an event-size record into
 * its CPU's ring the way the datapath writes its events (the ring's share of an
 * event). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "event_ring.h"

SEC("tc")
int nf_empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

NF_EVENT_RING_MAPS(floor_rings, floor_doorbell);

SEC("tc")
int nf_ring_floor(struct __sk_buff *skb)
{
	struct nf_event_ring *ring;
	struct nf_event *e = nf_event_reserve(&floor_rings, nf_event_record_bytes(0), &ring);

	if (!e)
		return TC_ACT_OK;
	__builtin_memset(e, 0, sizeof(*e));
	e->length = skb->len;
	nf_event_publish(&floor_doorbell, ring, nf_event_record_bytes(0), 0); /* no reader sleeps on the floor */
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
