// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The loader's state, kept in bpffs beside the datapath so a fresh process
 * sees every pod it attached and every object it applied. Maps only: no
 * program reads them. BTF-defined so bpftool pretty-prints them.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "netfence_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_root_marker);
} root_marker SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_pending_change);
} pending_change SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_loader_counters);
} loader_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_MAX_PODS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); /* pod id */
	__type(value, struct nf_pod_registration);
} pod_registry SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_MAX_OBJECTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); /* object index */
	__type(value, struct nf_object_manifest);
} policy_manifests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_MAX_OBJECT_CHUNKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_object_chunk_key);
	__type(value, struct nf_object_chunk);
} policy_chunks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NF_RETIRED_OBJECTS);
	__type(key, __u32); /* object index */
	__type(value, struct nf_retired_object);
} retired_objects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_MAX_DNS_PROXIES);
	__type(key, __u8[NF_ADDRESS_BYTES]);
	__type(value, struct nf_dns_proxy_stats);
} dns_proxy_stats SEC(".maps");

/* How many lost events the event reader has already reported: a loss is
 * reported once, by whichever reader comes next, never silently dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} events_reported_lost SEC(".maps");

/* The suppressed events the event reader has already reported, per pod and
 * direction (nf_event_limit_index): the same, for rate limits. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_NODE_EVENT_LIMIT);
	__type(key, __u32);
	__type(value, struct nf_event_counts);
} events_reported_suppressed SEC(".maps");

char LICENSE[] SEC("license") = "Dual BSD/GPL";
