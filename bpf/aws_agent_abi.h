/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Amazon VPC CNI network-policy agent's map layouts, as netfence reads
 * them on an EKS node (shared guide FACTS.md; the agent's pkg/ebpf/c sources):
 * not netfence's ABI, but defined once here for the two sides that use it, the
 * stand-in for the agent's programs (aws_agent_fixture.bpf.c) and the decoders
 * in Swift. IPv4 and IPv6 variants differ only in address width.
 */
#ifndef AWS_AGENT_ABI_H
#define AWS_AGENT_ABI_H

#include <linux/types.h>

/* Port-rule slots per trie value; the agent's datapath scans all of them. */
#define AWS_SLOTS 24
#define AWS_PROTOCOL_ANY 254
#define AWS_PROTOCOL_RESERVED 255 /* a slot that denies (except blocks) */
/* Cluster-policy priority field: rule priority × 10 + action; Baseline's priorities offset by 2000. */
#define AWS_PRIORITY_ACTION_BASE 10
#define AWS_ADMIN_PRIORITY_LIMIT 1000
#define AWS_BASELINE_PRIORITY_OFFSET 2000

/* *_pod_state_map: u32 (0 network policy, 1 cluster policy) → u8 state. */
enum aws_policy_kind {
	AWS_KIND_NETWORK_POLICY = 0,
	AWS_KIND_CLUSTER_POLICY = 1,
};
enum aws_pod_state {
	AWS_POLICIES_APPLIED = 0,
	AWS_DEFAULT_ALLOW = 1,
	AWS_DEFAULT_DENY = 2,
};

/* Event tiers: 0 error, 1 admin, 2 network policy, 3 baseline, 4 default (netfence's numbering too). */
enum aws_tier {
	AWS_TIER_ERROR = 0,
	AWS_TIER_ADMIN = 1,
	AWS_TIER_NETWORK_POLICY = 2,
	AWS_TIER_BASELINE = 3,
	AWS_TIER_DEFAULT = 4,
};

/* ingress_map / egress_map / cp_*: LPM trie keys. */
struct aws_trie_key {
	__u32 prefixlen;
	__u8 ip[4];
};
struct aws_trie_key_v6 {
	__u32 prefixlen;
	__u8 ip[16];
};

/* A slot of ingress_map / egress_map (value: AWS_SLOTS of them). */
struct aws_trie_slot {
	__u32 protocol;
	__u32 start_port; /* 0: every port */
	__u32 end_port;   /* 0: start_port alone */
};

/* A slot of cp_ingress_map / cp_egress_map. */
struct aws_cp_trie_slot {
	__u32 protocol;
	__u32 priority; /* rule priority × 10 + action (0 deny, 1 accept, 2 pass) */
	__u32 start_port;
	__u32 end_port;
};

/* global_aws_conntrack_map: addresses in network order, ports in host order. */
struct aws_conntrack_key {
	__u32 src_ip;
	__u16 src_port;
	__u16 pad0;
	__u32 dest_ip;
	__u16 dest_port;
	__u8 protocol;
	__u8 pad1;
	__u32 owner_ip; /* the pod's end of the flow */
	__u32 ifindex;  /* the host veth it was seen on */
};
struct aws_conntrack_key_v6 {
	__u8 src_ip[16];
	__u16 src_port;
	__u16 pad0;
	__u8 dest_ip[16];
	__u16 dest_port;
	__u8 protocol;
	__u8 pad1;
	__u8 owner_ip[16];
	__u32 ifindex;
};
struct aws_conntrack_value {
	__u64 val;       /* one code for the (network policy, cluster policy) state pair: GET_CT_VAL */
	__u64 last_seen; /* CLOCK_MONOTONIC ns */
};

/* global_policy_events (ring buffer) records. */
struct aws_event {
	__u32 src_ip;
	__u32 src_port;
	__u32 dest_ip;
	__u32 dest_port;
	__u32 protocol;
	__u32 verdict; /* 0 deny, 1 accept */
	__u32 packet_sz;
	__u8 is_egress;
	__u8 tier; /* enum aws_tier */
	__u8 pad[2];
};
struct aws_event_v6 {
	__u8 src_ip[16];
	__u32 src_port;
	__u8 dest_ip[16];
	__u32 dest_port;
	__u32 protocol;
	__u32 verdict;
	__u32 packet_sz;
	__u8 is_egress;
	__u8 tier;
	__u8 pad[2];
};

_Static_assert(sizeof(struct aws_trie_key) == 8, "aws_trie_key layout");
_Static_assert(sizeof(struct aws_trie_key_v6) == 20, "aws_trie_key_v6 layout");
_Static_assert(sizeof(struct aws_trie_slot) * AWS_SLOTS == 288, "aws trie value layout");
_Static_assert(sizeof(struct aws_cp_trie_slot) * AWS_SLOTS == 384, "aws cp trie value layout");
_Static_assert(sizeof(struct aws_conntrack_key) == 24, "aws_conntrack_key layout");
_Static_assert(sizeof(struct aws_conntrack_key_v6) == 60, "aws_conntrack_key_v6 layout");
_Static_assert(__builtin_offsetof(struct aws_conntrack_key_v6, ifindex) == 56, "aws_conntrack_key_v6.ifindex");
_Static_assert(sizeof(struct aws_conntrack_value) == 16, "aws_conntrack_value layout");
_Static_assert(sizeof(struct aws_event) == 32, "aws_event layout");
_Static_assert(sizeof(struct aws_event_v6) == 56, "aws_event_v6 layout");
_Static_assert(__builtin_offsetof(struct aws_event_v6, is_egress) == 52, "aws_event_v6.is_egress");

#endif /* AWS_AGENT_ABI_H */
