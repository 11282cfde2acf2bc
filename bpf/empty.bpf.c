// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Floors for benchmarks, measured beside the datapath in the same run: a tc
 * program that does nothing, and one that only writes an event-size record to a
 * ring buffer the way the datapath writes its events (the kernel ring's share of
 * an event). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "event_ring.h"

SEC("tc")
int nf_empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NF_EVENT_RING_BYTES);
} floor_events SEC(".maps");

SEC("tc")
int nf_ring_floor(struct __sk_buff *skb)
{
	struct nf_event e = { .length = skb->len };

	nf_ring_write(&floor_events, &e, sizeof(e));
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
