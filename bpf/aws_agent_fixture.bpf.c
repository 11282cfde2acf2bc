// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A stand-in for the Amazon VPC CNI network-policy agent's tc programs, for
 * tests of how netfence reads an EKS node: the agent's map layouts and names
 * (FACTS.md), written by real traffic. It decides nothing (every packet
 * passes); it records each IPv4 flow in the agent's conntrack layout, with the
 * state code its GET_CT_VAL gives for the pod's states, and reports each packet
 * in the agent's event layout. Not the agent's code: its layouts only.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "aws_agent_abi.h"

#define TRIE(name, slot_type)                                     \
	struct {                                                  \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);              \
		__uint(max_entries, 256);                         \
		__uint(map_flags, BPF_F_NO_PREALLOC);             \
		__type(key, struct aws_trie_key);                 \
		__type(value, slot_type[AWS_SLOTS]);              \
	} name SEC(".maps")

TRIE(ingress_map, struct aws_trie_slot);
TRIE(egress_map, struct aws_trie_slot);
TRIE(cp_ingress_map, struct aws_cp_trie_slot);
TRIE(cp_egress_map, struct aws_cp_trie_slot);

#define POD_STATE(name)                       \
	struct {                              \
		__uint(type, BPF_MAP_TYPE_HASH);  \
		__uint(max_entries, 2);           \
		__type(key, __u32);               \
		__type(value, __u8);              \
	} name SEC(".maps")

POD_STATE(ingress_pod_state_map);
POD_STATE(egress_pod_state_map);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct aws_conntrack_key);
	__type(value, struct aws_conntrack_value);
} aws_conntrack_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
} policy_events SEC(".maps");

/* GET_CT_VAL of the agent: one code for the pair of states. */
static __always_inline __u64 state_code(__u8 np, __u8 cp)
{
	if (np == AWS_DEFAULT_ALLOW && cp == AWS_DEFAULT_ALLOW)
		return 2;
	if (np == AWS_DEFAULT_ALLOW && cp == AWS_DEFAULT_DENY)
		return 3;
	if (np == AWS_DEFAULT_ALLOW && cp == AWS_POLICIES_APPLIED)
		return 4;
	if (np == AWS_POLICIES_APPLIED && cp == AWS_DEFAULT_ALLOW)
		return 5;
	if (np == AWS_POLICIES_APPLIED && cp == AWS_DEFAULT_DENY)
		return 6;
	return 7;
}

static __always_inline __u8 pod_state(void *states, __u32 kind)
{
	__u8 *state = bpf_map_lookup_elem(states, &kind);

	return state ? *state : AWS_DEFAULT_ALLOW;
}

/* EGRESS: what the pod sends (on the host veth's tc ingress), else what it receives. */
static __always_inline int record(struct __sk_buff *skb, int egress, void *trie, void *cp_trie, void *states)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl < 5)
		return TC_ACT_OK;
	__u16 *ports = (void *)ip + ip->ihl * 4;
	__u16 sport = 0, dport = 0;

	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && (void *)(ports + 2) <= data_end) {
		sport = bpf_ntohs(ports[0]);
		dport = bpf_ntohs(ports[1]);
	}
	/* the tries are consulted (as the agent does) but decide nothing here */
	struct aws_trie_key peer = { .prefixlen = 32 };

	__builtin_memcpy(peer.ip, egress ? &ip->daddr : &ip->saddr, 4);
	int policed = bpf_map_lookup_elem(trie, &peer) != NULL || bpf_map_lookup_elem(cp_trie, &peer) != NULL;

	struct aws_conntrack_key key = {
		.src_ip = ip->saddr, .src_port = sport, .dest_ip = ip->daddr, .dest_port = dport,
		.protocol = ip->protocol, .owner_ip = egress ? ip->saddr : ip->daddr, .ifindex = skb->ifindex,
	};
	struct aws_conntrack_value value = { .val = state_code(pod_state(states, AWS_KIND_NETWORK_POLICY),
							       pod_state(states, AWS_KIND_CLUSTER_POLICY)),
					     .last_seen = bpf_ktime_get_ns() };

	bpf_map_update_elem(&aws_conntrack_map, &key, &value, BPF_ANY);

	struct aws_event *event = bpf_ringbuf_reserve(&policy_events, sizeof(*event), 0);

	if (event) {
		__builtin_memset(event, 0, sizeof(*event));
		event->src_ip = ip->saddr;
		event->src_port = sport;
		event->dest_ip = ip->daddr;
		event->dest_port = dport;
		event->protocol = ip->protocol;
		event->verdict = 1;
		event->packet_sz = skb->len;
		event->is_egress = egress;
		event->tier = policed ? AWS_TIER_NETWORK_POLICY : AWS_TIER_DEFAULT;
		bpf_ringbuf_submit(event, 0);
	}
	return TC_ACT_OK;
}

SEC("tc")
int handle_ingress(struct __sk_buff *skb)
{
	return record(skb, 0, &ingress_map, &cp_ingress_map, &ingress_pod_state_map);
}

SEC("tc")
int handle_egress(struct __sk_buff *skb)
{
	return record(skb, 1, &egress_map, &cp_egress_map, &egress_pod_state_map);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
