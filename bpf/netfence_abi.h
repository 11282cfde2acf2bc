/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The netfence ABI: every struct, enum and limit shared between the BPF
 * programs in this folder and user space. The programs and the C shim include
 * this one file; Swift tests pin the sizes and offsets asserted at the end.
 * Padding is explicit so no byte of a key or value is left undefined.
 */
#ifndef NETFENCE_ABI_H
#define NETFENCE_ABI_H

#include <linux/types.h>

/* Which way a packet crosses the pod's host veth. The tc ingress hook of the
 * host veth sees what the pod sends (pod egress), and the reverse. */
enum nf_direction {
	NF_DIRECTION_INGRESS = 0,
	NF_DIRECTION_EGRESS = 1,
	NF_DIRECTION_COUNT = 2,
};

/* Capacity of the demo's per-interface counter map. */
#define NF_DEMO_MAX_COUNTERS 1024

/* Key of the demo's counters: one row per interface and direction. */
struct nf_demo_counter_key {
	__u32 ifindex;
	__u32 direction; /* enum nf_direction */
};

/* Value of the demo's counters. */
struct nf_packet_counter {
	__u64 packets;
	__u64 bytes;
};

_Static_assert(sizeof(struct nf_demo_counter_key) == 8, "nf_demo_counter_key layout");
_Static_assert(__builtin_offsetof(struct nf_demo_counter_key, direction) == 4, "nf_demo_counter_key.direction");
_Static_assert(sizeof(struct nf_packet_counter) == 16, "nf_packet_counter layout");
_Static_assert(__builtin_offsetof(struct nf_packet_counter, bytes) == 8, "nf_packet_counter.bytes");

#endif /* NETFENCE_ABI_H */
