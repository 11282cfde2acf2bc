// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The README demo: counts the packets crossing a pod's host veth, per
 * interface and direction, and lets every packet pass. It exercises the whole
 * chain (embed, load, pin, tc attach, introspection) before the real datapath.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "netfence_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_DEMO_MAX_COUNTERS);
	__type(key, struct nf_demo_counter_key);
	__type(value, struct nf_packet_counter);
} demo_packets SEC(".maps");

static __always_inline int count_packet(struct __sk_buff *skb, __u32 direction)
{
	struct nf_demo_counter_key key = { .ifindex = skb->ifindex, .direction = direction };
	struct nf_packet_counter *counter = bpf_map_lookup_elem(&demo_packets, &key);

	if (!counter) {
		struct nf_packet_counter first = { .packets = 1, .bytes = skb->len };

		/* another CPU may have created the row meanwhile: then add to it */
		if (bpf_map_update_elem(&demo_packets, &key, &first, BPF_NOEXIST) == 0)
			return TC_ACT_OK;
		counter = bpf_map_lookup_elem(&demo_packets, &key);
		if (!counter)
			return TC_ACT_OK;
	}
	__sync_fetch_and_add(&counter->packets, 1);
	__sync_fetch_and_add(&counter->bytes, skb->len);
	return TC_ACT_OK;
}

SEC("tc")
int demo_ingress(struct __sk_buff *skb)
{
	return count_packet(skb, NF_DIRECTION_INGRESS);
}

SEC("tc")
int demo_egress(struct __sk_buff *skb)
{
	return count_packet(skb, NF_DIRECTION_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
