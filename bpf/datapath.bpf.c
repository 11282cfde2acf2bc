// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The enforcement datapath: one object for every pod. nf_from_pod sits on the
 * tc ingress hook of a pod's host veth (what the pod sends: its egress) and
 * nf_to_pod on the tc egress hook (what it receives: its ingress). The pod
 * behind an interface comes from the pods map, so attaching a pod never runs
 * the verifier. Decision order: conntrack, then (for pods with domain rules)
 * DNS only to the DNS proxy, then Admin, NetworkPolicy, Baseline and the
 * pod's default (docs/datapath.md, docs/dns.md).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "event_ring.h"
#include "netfence_abi.h"

/* ---- Maps ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_MAX_PODS);
	__type(key, __u32); /* ifindex of the host veth */
	__type(value, struct nf_pod);
} pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_MAX_PODS);
	__type(key, __u32); /* pod id */
	__type(value, __u32);
} revisions SEC(".maps");

/* The tries pods' records name, shared by pods with identical policies; the
 * loader builds a new one aside and flips records to it (policies, then pods),
 * so no packet sees half a policy. The template states sizes: its key types
 * would reach BTF only as forward declarations, which libbpf cannot size. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NF_POLICY_ENTRIES);
	__type(key, __u32); /* a record's trie[direction] */
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__uint(max_entries, NF_MAX_PREFIXES);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__uint(key_size, sizeof(struct nf_lpm_key));
		__uint(value_size, sizeof(struct nf_rule_set));
	});
} policies SEC(".maps");

/* What each trie in policies holds (the loader's, to share tries; never read here). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_POLICY_ENTRIES);
	__type(key, __u32);
	__type(value, struct nf_policy_digest);
} policy_digests SEC(".maps");

/* The port rules of a pod's domain patterns, per slot (flipped with the pod
 * record like the tries). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_DOMAIN_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_domain_rule_key);
	__type(value, struct nf_rule_set);
} domain_rules SEC(".maps");

/* What each pod resolved through the DNS proxy, written by the proxy. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_DOMAIN_GRANT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_domain_grant_key);
	__type(value, struct nf_domain_grant);
} domain_grants SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_MAX_DNS_PROXIES);
	__type(key, __u8[NF_ADDRESS_BYTES]);
	__type(value, struct nf_dns_proxy);
} dns_proxies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dns_heartbeat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, NF_GENERATION_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} generations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NF_CONNTRACK_ENTRIES);
	__type(key, struct nf_conntrack_key);
	__type(value, struct nf_conntrack_value);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NF_FRAGMENT_ENTRIES);
	__type(key, struct nf_fragment_key);
	__type(value, struct nf_fragment_value);
} fragments SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_settings);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NF_COUNTER_ENTRIES);
	__type(key, __u32);
	__type(value, struct nf_packet_counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NF_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_MAX_PODS);
	__type(key, __u32);
	__type(value, struct nf_pod_event_level);
} pod_event_levels SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NF_EVENT_LIMIT_ENTRIES);
	__type(key, __u32);
	__type(value, struct nf_event_limit);
} event_limits SEC(".maps");

/* New flows per rule and pod (LRU: a full table forgets the coldest, never fails). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, NF_RULE_HIT_ENTRIES);
	__type(key, struct nf_hit_key);
	__type(value, struct nf_hit_value);
} rule_hits SEC(".maps");

/* nf_decide's accumulators. In map memory the verifier does not track their
 * values, so the rule loop's states prune after one pass per index (on the
 * stack, every combination of best-so-far values was explored separately and
 * the program exceeded the verifier's budget). Not reentrant: tc programs do
 * not nest on a CPU. */
struct decide_scratch {
	__u32 admin_score;
	__u32 admin_rule;
	__u32 baseline_score;
	__u32 baseline_rule;
	__u32 policy_rule;
	__u32 policy_match;
	__u32 expired_rule; /* a NetworkPolicy domain rule that matched but whose grant expired */
	/* The same with audit objects enforced (their rules count too), for pods they select. */
	__u32 audit_admin_score;
	__u32 audit_admin_rule;
	__u32 audit_baseline_score;
	__u32 audit_baseline_rule;
	__u32 audit_policy_rule;
	__u32 audit_policy_match;
	__u32 pad;
	__u64 audit_result; /* nf_decide's packing, of the decision with audit objects enforced */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct decide_scratch);
} scratch SEC(".maps");

/* The coarse clock as this CPU last read it, and jiffies then. The coarse
 * clock moves only when jiffies does, and jiffies is a load (the verifier
 * inlines bpf_jiffies64) where the clock is a helper call: a tenth of the
 * established path. Lost on a reload, which only costs one read. */
struct coarse_clock {
	__u64 jiffies;
	__u64 now_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct coarse_clock);
} coarse_clock SEC(".maps");

NF_EVENT_RING_MAPS(event_rings, event_doorbell);

/* CLOCK_MONOTONIC, coarse (bpf_ktime_get_coarse_ns), read once per jiffy on each CPU. */
static __always_inline __u64 coarse_now(void)
{
	__u32 zero = 0;
	struct coarse_clock *clock = bpf_map_lookup_elem(&coarse_clock, &zero);
	__u64 jiffies = bpf_jiffies64();

	if (!clock)
		return bpf_ktime_get_coarse_ns(); /* cannot happen: a one-entry array */
	if (clock->jiffies != jiffies) {
		__u64 now = bpf_ktime_get_coarse_ns();

		/* A tick moves jiffies just before the clock: read between the two, the
		 * clock has not moved yet, and the next packet reads it again. */
		if (now != clock->now_ns) {
			clock->jiffies = jiffies;
			clock->now_ns = now;
		}
		return now;
	}
	return clock->now_ns;
}

/* ---- Parsing ---- */

#define ICMP_ECHO_REPLY 0
#define ICMP_DEST_UNREACHABLE 3
#define ICMP_ECHO_REQUEST 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETER_PROBLEM 12
#define ICMPV6_DEST_UNREACHABLE 1
#define ICMPV6_PACKET_TOO_BIG 2
#define ICMPV6_TIME_EXCEEDED 3
#define ICMPV6_PARAMETER_PROBLEM 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMPV6_ND_FIRST 133 /* router solicitation .. redirect */
#define ICMPV6_ND_LAST 137
#define ICMPV6_MLD_FIRST 130 /* listener query, report, done */
#define ICMPV6_MLD_LAST 132
#define ICMPV6_MLDV2_REPORT 143
#define ICMP_HEADER_BYTES 8
#define IPV4_FRAGMENT_OFFSET_MASK 0x1fff
#define IPV4_MORE_FRAGMENTS 0x2000
#define IPV6_FRAGMENT_OFFSET_SHIFT 3
#define IPV6_MORE_FRAGMENTS 0x1

enum parse_result {
	PARSE_OK,
	PARSE_PASS, /* not ours to judge: non-IP, neighbour discovery */
	PARSE_BAD,  /* truncated or malformed */
};

/* A flow's addresses, protocol and ports, as the datapath keys it (aligned for
 * the flow cache's 8-byte compares: the verifier refuses unaligned stack loads). */
struct tuple {
	__u8 saddr[NF_ADDRESS_BYTES];
	__u8 daddr[NF_ADDRESS_BYTES];
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 pad[3];
} __attribute__((aligned(8)));

struct packet {
	struct tuple flow;
	struct tuple inner; /* for ICMP errors: the packet the error is about */
	__u32 fragment_id;
	__u8 family;
	__u8 icmp_error;      /* inner is valid */
	__u8 first_fragment;  /* offset 0, more fragments follow */
	__u8 later_fragment;  /* offset > 0: no transport header */
};

static __always_inline void map_ipv4(__u8 *out, __be32 address)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &address, 4);
}

/* Where direct packet access reaches; past it (long IPv6 extension chains)
 * the ports are copied with bpf_skb_load_bytes. */
#define DIRECT_ACCESS_REACH 0xff

/* Ports at OFFSET for protocols that have them; ICMP echo uses its identifier. */
static __always_inline int parse_ports(struct __sk_buff *skb, __u32 offset, struct tuple *t)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	__be16 copied[2];
	__be16 *ports = copied;

	switch (t->protocol) {
	case NF_PROTOCOL_TCP:
	case NF_PROTOCOL_UDP:
	case NF_PROTOCOL_SCTP:
		if (offset <= DIRECT_ACCESS_REACH && data + (offset & DIRECT_ACCESS_REACH) + sizeof(copied) <= data_end)
			ports = data + (offset & DIRECT_ACCESS_REACH);
		else if (bpf_skb_load_bytes(skb, offset, copied, sizeof(copied)))
			return -1;
		t->sport = bpf_ntohs(ports[0]);
		t->dport = bpf_ntohs(ports[1]);
	}
	return 0;
}

/* The IPv4 header an ICMP error quotes, at OFFSET. */
static __always_inline int parse_inner_ipv4(struct __sk_buff *skb, __u32 offset, struct tuple *t)
{
	struct iphdr ip;

	__builtin_memset(t, 0, sizeof(*t));
	if (bpf_skb_load_bytes(skb, offset, &ip, sizeof(ip)) || ip.ihl < 5)
		return -1;
	map_ipv4(t->saddr, ip.saddr);
	map_ipv4(t->daddr, ip.daddr);
	t->protocol = ip.protocol;
	return parse_ports(skb, offset + ip.ihl * 4, t);
}

/* The IPv6 header an ICMPv6 error quotes, at OFFSET (extension headers there
 * are not walked: such errors are judged as plain ICMPv6). */
static __always_inline int parse_inner_ipv6(struct __sk_buff *skb, __u32 offset, struct tuple *t)
{
	struct ipv6hdr ip;

	__builtin_memset(t, 0, sizeof(*t));
	if (bpf_skb_load_bytes(skb, offset, &ip, sizeof(ip)))
		return -1;
	__builtin_memcpy(t->saddr, &ip.saddr, NF_ADDRESS_BYTES);
	__builtin_memcpy(t->daddr, &ip.daddr, NF_ADDRESS_BYTES);
	t->protocol = ip.nexthdr;
	return parse_ports(skb, offset + sizeof(ip), t);
}

static __always_inline int parse_transport(struct __sk_buff *skb, __u32 offset, struct packet *p)
{
	__u8 icmp[ICMP_HEADER_BYTES];

	if (p->later_fragment)
		return PARSE_OK;
	if (p->flow.protocol != NF_PROTOCOL_ICMP && p->flow.protocol != NF_PROTOCOL_ICMPV6)
		return parse_ports(skb, offset, &p->flow) ? PARSE_BAD : PARSE_OK;

	if (bpf_skb_load_bytes(skb, offset, icmp, sizeof(icmp)))
		return PARSE_BAD;
	__u8 type = icmp[0];
	__u16 identifier = (icmp[4] << 8) | icmp[5];

	if (p->flow.protocol == NF_PROTOCOL_ICMP) {
		if (type == ICMP_ECHO_REQUEST || type == ICMP_ECHO_REPLY) {
			p->flow.sport = p->flow.dport = identifier;
		} else if (type == ICMP_DEST_UNREACHABLE || type == ICMP_TIME_EXCEEDED ||
			   type == ICMP_PARAMETER_PROBLEM) {
			p->icmp_error = !parse_inner_ipv4(skb, offset + ICMP_HEADER_BYTES, &p->inner);
		}
		return PARSE_OK;
	}
	if ((type >= ICMPV6_ND_FIRST && type <= ICMPV6_ND_LAST) ||
	    (type >= ICMPV6_MLD_FIRST && type <= ICMPV6_MLD_LAST) || type == ICMPV6_MLDV2_REPORT)
		return PARSE_PASS; /* neighbour and multicast listener discovery keep the link working */
	if (type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY) {
		p->flow.sport = p->flow.dport = identifier;
	} else if (type >= ICMPV6_DEST_UNREACHABLE && type <= ICMPV6_PARAMETER_PROBLEM) {
		p->icmp_error = !parse_inner_ipv6(skb, offset + ICMP_HEADER_BYTES, &p->inner);
	}
	return PARSE_OK;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		return PARSE_BAD;
	__u32 header_bytes = ip->ihl * 4; /* options included */
	if ((void *)ip + header_bytes > data_end)
		return PARSE_BAD;

	p->family = NF_FAMILY_IPV4;
	p->flow.protocol = ip->protocol;
	map_ipv4(p->flow.saddr, ip->saddr);
	map_ipv4(p->flow.daddr, ip->daddr);
	__u16 fragment = bpf_ntohs(ip->frag_off);
	p->fragment_id = bpf_ntohs(ip->id);
	p->later_fragment = (fragment & IPV4_FRAGMENT_OFFSET_MASK) != 0;
	p->first_fragment = !p->later_fragment && (fragment & IPV4_MORE_FRAGMENTS);
	return parse_transport(skb, sizeof(struct ethhdr) + header_bytes, p);
}

/* Extension headers a packet may carry before its transport header. */
#define IPV6_HOP_BY_HOP 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_AUTHENTICATION 51
#define IPV6_NO_NEXT_HEADER 59
#define IPV6_DESTINATION_OPTIONS 60

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > data_end || ip->version != 6)
		return PARSE_BAD;
	p->family = NF_FAMILY_IPV6;
	__builtin_memcpy(p->flow.saddr, &ip->saddr, NF_ADDRESS_BYTES);
	__builtin_memcpy(p->flow.daddr, &ip->daddr, NF_ADDRESS_BYTES);

	__u8 next = ip->nexthdr;
	__u32 offset = sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
	for (int i = 0; i < NF_MAX_IPV6_EXTENSIONS; i++) {
		__u8 header[8];

		switch (next) {
		case IPV6_HOP_BY_HOP:
		case IPV6_ROUTING:
		case IPV6_DESTINATION_OPTIONS:
			if (bpf_skb_load_bytes(skb, offset, header, 2))
				return PARSE_BAD;
			next = header[0];
			offset += (header[1] + 1) * 8;
			continue;
		case IPV6_AUTHENTICATION:
			if (bpf_skb_load_bytes(skb, offset, header, 2))
				return PARSE_BAD;
			next = header[0];
			offset += (header[1] + 2) * 4;
			continue;
		case IPV6_FRAGMENT: {
			if (bpf_skb_load_bytes(skb, offset, header, 8))
				return PARSE_BAD;
			__u16 fragment = (header[2] << 8) | header[3];
			next = header[0];
			p->fragment_id = ((__u32)header[4] << 24) | (header[5] << 16) | (header[6] << 8) | header[7];
			p->later_fragment = (fragment >> IPV6_FRAGMENT_OFFSET_SHIFT) != 0;
			p->first_fragment = !p->later_fragment && (fragment & IPV6_MORE_FRAGMENTS);
			offset += 8;
			continue;
		}
		case IPV6_NO_NEXT_HEADER:
			p->flow.protocol = next;
			return PARSE_OK;
		default:
			p->flow.protocol = next;
			return parse_transport(skb, offset, p);
		}
	}
	return PARSE_BAD; /* more extension headers than we walk */
}

/* Fills P from the frame. Only what every path reads is cleared here; the
 * quoted tuple is written (and cleared) only when an ICMP error is parsed. */
static __always_inline int parse(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	__builtin_memset(&p->flow, 0, sizeof(p->flow));
	p->fragment_id = 0;
	p->family = 0;
	p->icmp_error = 0;
	p->first_fragment = 0;
	p->later_fragment = 0;

	if ((void *)(eth + 1) > data_end)
		return PARSE_PASS; /* not even Ethernet: nothing IP to judge */
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, p);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, p);
	return PARSE_PASS; /* ARP and other non-IP frames */
}

/* ---- Policy ---- */

struct decision {
	__u32 rule_id;
	__u8 verdict; /* enum nf_verdict */
	__u8 tier;    /* enum nf_tier */
	__u8 reason;  /* enum nf_reason */
	__u8 audited; /* audit objects select the pod: the audit_ fields hold their decision */
	__u32 audit_rule_id;
	__u8 audit_verdict;
	__u8 audit_tier;
	__u8 audit_reason;
};

#define NO_SCORE 0xffffffffu

static __always_inline void *live_trie(const struct nf_pod *pod, __u8 direction)
{
	__u32 index = pod->trie[direction & 1];

	return bpf_map_lookup_elem(&policies, &index);
}

/* nf_decide's packed arguments and result. It takes scalars only, so the
 * verifier checks it once as a global function instead of once per caller
 * path (inlined, its rule loop exceeded the verifier's budget). */
#define DECIDE_POD_ID_MASK 0xffff
#define DECIDE_SLOT_SHIFT 16
#define DECIDE_STATE_SHIFT 17
#define DECIDE_DOMAINS (1u << 19)
#define DECIDE_AUDIT (1u << 20)
#define DECIDE_AUDIT_STATE_SHIFT 21
#define DECIDE_ESTABLISHED (1u << 8)
#define DECIDE_IPV6 (1u << 9)
#define DECIDE_PORT_SHIFT 16
#define DECIDE_TIER_SHIFT 8
#define DECIDE_REASON_SHIFT 16
#define DECIDE_RULE_SHIFT 32

/* Folds the rules of SET that match the flow into BEST. Rules of a domain
 * grant that expired (LIVE 0) decide nothing; they only name the rule a deny
 * is attributed to. Audit rules count only toward the audit decision, which
 * (AUDIT) counts every rule. */
static __always_inline void score_rules(const struct nf_rule_set *set, struct decide_scratch *best, __u8 protocol,
					__u16 port, int live, int audit)
{
	for (__u32 i = 0; i < NF_MAX_RULES_PER_PREFIX; i++) {
		if (i >= set->count)
			break;
		const struct nf_port_rule *rule = &set->rules[i];

		if (rule->protocol != NF_PROTOCOL_ANY && rule->protocol != protocol)
			continue;
		if (rule->port_start && (port < rule->port_start || port > rule->port_end))
			continue;
		if (!live) {
			if (rule->tier == NF_TIER_NETWORK_POLICY && !best->expired_rule && !(rule->flags & NF_RULE_AUDIT))
				best->expired_rule = rule->rule_id;
			continue;
		}
		__u32 score = rule->priority * 4 + rule->action;

		if (audit) {
			if (rule->tier == NF_TIER_ADMIN && score < best->audit_admin_score) {
				best->audit_admin_score = score;
				best->audit_admin_rule = rule->rule_id;
			} else if (rule->tier == NF_TIER_BASELINE && score < best->audit_baseline_score) {
				best->audit_baseline_score = score;
				best->audit_baseline_rule = rule->rule_id;
			} else if (rule->tier == NF_TIER_NETWORK_POLICY && !best->audit_policy_match) {
				best->audit_policy_match = 1;
				best->audit_policy_rule = rule->rule_id;
			}
		}
		if (rule->flags & NF_RULE_AUDIT)
			continue;
		if (rule->tier == NF_TIER_ADMIN && score < best->admin_score) {
			best->admin_score = score;
			best->admin_rule = rule->rule_id;
		} else if (rule->tier == NF_TIER_BASELINE && score < best->baseline_score) {
			best->baseline_score = score;
			best->baseline_rule = rule->rule_id;
		} else if (rule->tier == NF_TIER_NETWORK_POLICY && !best->policy_match) {
			best->policy_match = 1;
			best->policy_rule = rule->rule_id;
		}
	}
}

/* The tiers over the best rules: Admin, then NetworkPolicy when STATE says the
 * pod is selected, then Baseline, then the default. Packed as nf_decide returns. */
static __always_inline __u64 decide_tiers(__u32 admin_score, __u32 admin_rule, __u32 baseline_score, __u32 baseline_rule,
					  __u32 policy_match, __u32 policy_rule, __u32 expired_rule, __u8 state, int proxy_alive)
{
	__u64 verdict, tier, rule, reason = NF_REASON_POLICY;

	if (admin_score != NO_SCORE && (admin_score & 3) != NF_ACTION_PASS) {
		tier = NF_TIER_ADMIN;
		verdict = (admin_score & 3) == NF_ACTION_ACCEPT;
		rule = admin_rule;
	} else if (state == NF_POD_POLICIES_APPLIED) {
		tier = NF_TIER_NETWORK_POLICY;
		verdict = policy_match != 0;
		rule = policy_rule;
		if (!verdict && expired_rule) {
			rule = expired_rule;
			reason = proxy_alive ? NF_REASON_DOMAIN_EXPIRED : NF_REASON_DNS_PROXY_DOWN;
		}
	} else if (baseline_score != NO_SCORE && (baseline_score & 3) != NF_ACTION_PASS) {
		tier = NF_TIER_BASELINE;
		verdict = (baseline_score & 3) == NF_ACTION_ACCEPT;
		rule = baseline_rule;
	} else {
		tier = NF_TIER_DEFAULT;
		verdict = state != NF_POD_DEFAULT_DENY;
		rule = 0;
	}
	return verdict | tier << DECIDE_TIER_SHIFT | reason << DECIDE_REASON_SHIFT | rule << DECIDE_RULE_SHIFT;
}

/* Decides a new flow to/from a peer: Admin, then NetworkPolicy when the pod
 * is selected, then Baseline, then the pod's default. The rules are those of
 * the peer's prefix in the pod's trie and, for a pod with domain rules, those
 * of each pattern its grant for the peer names while the grant is unexpired
 * and a DNS proxy alive (or regardless, for a flow already established). Within a cluster
 * tier the lowest priority wins and, at equal priority, Deny > Accept > Pass:
 * score = priority * 4 + action orders exactly that. With DECIDE_AUDIT the
 * decision with audit objects enforced goes to the scratch's audit_result.
 *   pod:  pod_id | slot << 16 | state << 17 | DECIDE_DOMAINS | DECIDE_AUDIT | audit state << 21 | direction (bit 31)
 *   flow: protocol | DECIDE_ESTABLISHED | DECIDE_IPV6 | port << 16
 *   policy: the index of the direction's trie (the record's trie[direction])
 *   returns verdict | tier << 8 | reason << 16 | rule_id << 32 */
__attribute__((noinline)) __u64 nf_decide(__u64 peer_high, __u64 peer_low, __u32 pod, __u32 flow, __u32 policy)
{
	__u32 pod_id = pod & DECIDE_POD_ID_MASK, slot = (pod >> DECIDE_SLOT_SHIFT) & 1;
	__u8 state = (pod >> DECIDE_STATE_SHIFT) & 3;
	int audit = (pod & DECIDE_AUDIT) != 0;
	__u8 protocol = flow & 0xff;
	__u16 port = flow >> DECIDE_PORT_SHIFT;
	__u32 zero = 0;
	struct decide_scratch *best = bpf_map_lookup_elem(&scratch, &zero);
	struct nf_rule_set *set = NULL;
	void *trie = bpf_map_lookup_elem(&policies, &policy);

	if (!best)
		return NF_VERDICT_DENY; /* cannot happen: a one-entry array */
	best->admin_score = best->baseline_score = NO_SCORE;
	best->admin_rule = best->baseline_rule = best->policy_rule = best->policy_match = best->expired_rule = 0;
	if (audit) {
		best->audit_admin_score = best->audit_baseline_score = NO_SCORE;
		best->audit_admin_rule = best->audit_baseline_rule = best->audit_policy_rule = best->audit_policy_match = 0;
	}
	if (trie) {
		struct nf_lpm_key key = { .prefixlen = NF_LPM_FAMILY_BITS + 8 * NF_ADDRESS_BYTES,
					  .family = (flow & DECIDE_IPV6) ? NF_FAMILY_IPV6 : NF_FAMILY_IPV4 };

		__builtin_memcpy(key.address, &peer_high, sizeof(peer_high));
		__builtin_memcpy(key.address + sizeof(peer_high), &peer_low, sizeof(peer_low));
		set = bpf_map_lookup_elem(trie, &key);
	}
	if (set)
		score_rules(set, best, protocol, port, 1, audit);

	struct nf_domain_grant *grant = NULL;

	if (pod & DECIDE_DOMAINS) {
		struct nf_domain_grant_key key = { .pod_id = pod_id };

		__builtin_memcpy(key.address, &peer_high, sizeof(peer_high));
		__builtin_memcpy(key.address + sizeof(peer_high), &peer_low, sizeof(peer_low));
		grant = bpf_map_lookup_elem(&domain_grants, &key);
	}
	int proxy_alive = 0;

	if (grant) {
		__u64 now = bpf_ktime_get_ns();
		__u64 *beat = bpf_map_lookup_elem(&dns_heartbeat, &zero);

		proxy_alive = beat && *beat + NF_DNS_HEARTBEAT_TIMEOUT_NS > now;

		for (__u32 i = 0; i < NF_MAX_PATTERNS_PER_GRANT; i++) {
			if (i >= grant->count)
				break;
			struct nf_domain_rule_key key = { .pod_id = pod_id, .slot = slot,
							  .pattern = grant->patterns[i].pattern };
			struct nf_rule_set *rules = bpf_map_lookup_elem(&domain_rules, &key);

			if (rules)
				score_rules(rules, best, protocol, port,
					    (flow & DECIDE_ESTABLISHED) ||
						    (proxy_alive && grant->patterns[i].expires_ns > now),
					    audit);
		}
	}

	if (audit)
		best->audit_result = decide_tiers(best->audit_admin_score, best->audit_admin_rule, best->audit_baseline_score,
						  best->audit_baseline_rule, best->audit_policy_match, best->audit_policy_rule,
						  best->expired_rule, (pod >> DECIDE_AUDIT_STATE_SHIFT) & 3, proxy_alive);
	return decide_tiers(best->admin_score, best->admin_rule, best->baseline_score, best->baseline_rule, best->policy_match,
			    best->policy_rule, best->expired_rule, state, proxy_alive);
}

/* DNS of a pod with domain rules goes to a DNS proxy and nowhere else, before
 * any tier: the proxy is what enforces those rules. Returns whether it decided. */
static __always_inline int decide_dns(const struct nf_pod *pod, __u8 direction, const __u8 *peer, __u8 protocol,
				      __u16 port, struct decision *d)
{
	if (direction != NF_DIRECTION_EGRESS || !(pod->flags & NF_POD_DOMAIN_RULES) || port != NF_DNS_PORT ||
	    (protocol != NF_PROTOCOL_UDP && protocol != NF_PROTOCOL_TCP))
		return 0;
	__u8 address[NF_ADDRESS_BYTES];

	__builtin_memcpy(address, peer, NF_ADDRESS_BYTES);
	int proxy = bpf_map_lookup_elem(&dns_proxies, address) != NULL;

	d->verdict = proxy ? NF_VERDICT_ALLOW : NF_VERDICT_DENY;
	d->tier = NF_TIER_NONE;
	d->rule_id = 0;
	d->reason = proxy ? NF_REASON_DNS_PROXY : NF_REASON_DNS_BYPASS;
	d->audited = 0;
	return 1;
}

/* Decides a new flow (or, ESTABLISHED, one tracked under an older revision)
 * of a pod in a direction into *d. */
static __always_inline void evaluate(const struct nf_pod *pod, __u8 direction, __u8 family, const __u8 *peer,
				     __u8 protocol, __u16 port, int established, struct decision *d)
{
	__u64 peer_high, peer_low;

	if (decide_dns(pod, direction, peer, protocol, port, d))
		return;
	__builtin_memcpy(&peer_high, peer, sizeof(peer_high));
	__builtin_memcpy(&peer_low, peer + sizeof(peer_high), sizeof(peer_low));
	__u32 packed_pod = (pod->pod_id & DECIDE_POD_ID_MASK) | (__u32)(pod->slot & 1) << DECIDE_SLOT_SHIFT |
			   (__u32)(pod->state[direction & 1] & 3) << DECIDE_STATE_SHIFT | (__u32)(direction & 1) << 31;
	if (direction == NF_DIRECTION_EGRESS && (pod->flags & NF_POD_DOMAIN_RULES))
		packed_pod |= DECIDE_DOMAINS;
	if (pod->flags & NF_POD_AUDIT)
		packed_pod |= DECIDE_AUDIT | (__u32)nf_pod_audit_state(pod->flags, direction & 1) << DECIDE_AUDIT_STATE_SHIFT;
	__u32 packed_flow = protocol | (__u32)port << DECIDE_PORT_SHIFT | (established ? DECIDE_ESTABLISHED : 0) |
			    (family == NF_FAMILY_IPV6 ? DECIDE_IPV6 : 0);
	__u64 result = nf_decide(peer_high, peer_low, packed_pod, packed_flow, pod->trie[direction & 1]);

	d->verdict = result & 1;
	d->tier = (result >> DECIDE_TIER_SHIFT) & 0xff;
	d->reason = (result >> DECIDE_REASON_SHIFT) & 0xff;
	d->rule_id = result >> DECIDE_RULE_SHIFT;
	d->audited = 0;
	if (pod->flags & NF_POD_AUDIT) {
		__u32 zero = 0;
		struct decide_scratch *best = bpf_map_lookup_elem(&scratch, &zero);

		if (best) {
			__u64 audit = best->audit_result;

			d->audited = 1;
			d->audit_verdict = audit & 1;
			d->audit_tier = (audit >> DECIDE_TIER_SHIFT) & 0xff;
			d->audit_reason = (audit >> DECIDE_REASON_SHIFT) & 0xff;
			d->audit_rule_id = audit >> DECIDE_RULE_SHIFT;
		}
	}
}

/* The peer of a flow is the far end: the destination of what the pod sends,
 * the source of what it receives. Policy ports are always the destination's. */
static __always_inline const __u8 *peer_of(const struct tuple *t, __u8 direction)
{
	return direction == NF_DIRECTION_EGRESS ? t->daddr : t->saddr;
}

/* Whether this direction of the pod is under any policy: a packet we cannot
 * read is dropped only there (a trie of audit rules alone enforces nothing). */
static __always_inline int enforced(const struct nf_pod *pod, __u8 direction)
{
	return pod->state[direction & 1] != NF_POD_DEFAULT_ALLOW ||
	       (!(pod->flags & (NF_POD_AUDIT_ONLY_TRIE << (direction & 1))) && live_trie(pod, direction));
}

/* ---- Bookkeeping: stats, counters, events ---- */

static __always_inline void count_stat(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &stat);

	if (value)
		*value += 1;
}

static __always_inline void count_packet(struct __sk_buff *skb, __u32 pod_id, __u8 direction, __u8 verdict)
{
	__u32 index = nf_counter_index(pod_id, direction, verdict);
	struct nf_packet_counter *counter = bpf_map_lookup_elem(&counters, &index);

	if (counter) {
		counter->packets += 1;
		counter->bytes += skb->len;
	}
}

/* A new flow RULE_ID decided (0: the pod's isolation or default), or (AUDIT)
 * would have decided with audit objects enforced, at NOW. */
static __always_inline void count_hit(const struct nf_pod *pod, __u8 direction, __u32 rule_id, __u8 tier, __u8 verdict, __u8 audit,
				      __u64 now)
{
	struct nf_hit_key key = { .rule_id = rule_id, .pod_id = pod->pod_id, .direction = direction, .tier = tier, .audit = audit };
	struct nf_hit_value *hit = bpf_map_lookup_elem(&rule_hits, &key);

	if (hit) {
		if (verdict == NF_VERDICT_ALLOW)
			hit->allowed += 1;
		else
			hit->denied += 1;
		hit->last_ns = now;
		return;
	}
	struct nf_hit_value first = { .allowed = verdict == NF_VERDICT_ALLOW, .denied = verdict != NF_VERDICT_ALLOW, .last_ns = now };

	bpf_map_update_elem(&rule_hits, &key, &first, BPF_ANY); /* per CPU: writes this CPU's share only */
}

/* Whether one more event fits LIMIT's window at RATE a second (0: no limit). Racing CPUs
 * may both start a new window; each event still takes exactly one count. */
static __always_inline int within_rate(struct nf_event_limit *limit, __u32 rate, __u64 now)
{
	if (!rate)
		return 1;
	if (now - limit->window_start_ns >= 1000000000ULL) {
		limit->window_start_ns = now;
		limit->window_events = 0;
	}
	return __sync_fetch_and_add(&limit->window_events, 1) < rate;
}

/* One more event of VERDICT a rate limit kept out of the ring. */
static __always_inline void count_suppressed(struct nf_event_limit *limit, __u8 verdict)
{
	if (verdict <= NF_VERDICT_AUDIT)
		__sync_fetch_and_add(&limit->suppressed.by_verdict[verdict], 1);
}

/* An event for VERDICT (an audit one at the deny level too: audit is asked for by
 * marking objects), if the pod's level (its own, or the node's) asks for it and the
 * rate limits let it through; otherwise counted as suppressed. It carries the first
 * snaplen bytes of the packet when the settings capture its verdict, and NOW: the
 * coarse clock the new flow's path read once (a tick's resolution, 1-4 ms; a second
 * read of the precise clock cost 20-30 ns, a fifth of an event). */
static __always_inline void emit_event(struct __sk_buff *skb, const struct nf_pod *pod, const struct packet *p,
				       __u8 direction, __u8 verdict, __u8 tier, __u32 rule_id, __u8 reason, __u64 now)
{
	__u32 zero = 0, pod_id = pod->pod_id;
	struct nf_settings *config = bpf_map_lookup_elem(&settings, &zero);
	struct nf_pod_event_level *own = bpf_map_lookup_elem(&pod_event_levels, &pod_id);

	if (!config)
		return; /* cannot happen: a one-entry array */
	__u32 level = own && own->overridden ? own->level : config->event_level;

	if (level == NF_EVENTS_NONE || (level == NF_EVENTS_DENY && verdict == NF_VERDICT_ALLOW))
		return;

	if (config->pod_event_rate || config->node_event_rate) { /* no limit set: nothing to look up */
		__u32 index = nf_event_limit_index(pod_id, direction & 1), node_index = NF_NODE_EVENT_LIMIT;
		struct nf_event_limit *limit = bpf_map_lookup_elem(&event_limits, &index);
		struct nf_event_limit *node = bpf_map_lookup_elem(&event_limits, &node_index);

		if (!limit || !node)
			return;
		if (!within_rate(limit, config->pod_event_rate, now) || !within_rate(node, config->node_event_rate, now)) {
			count_suppressed(limit, verdict);
			return;
		}
	}

	__u32 captured = 0;

	if (config->snaplen && (config->capture_verdicts == NF_CAPTURE_ALL || verdict != NF_VERDICT_ALLOW)) {
		captured = config->snaplen < skb->len ? config->snaplen : skb->len;
		if (captured > NF_MAX_SNAPLEN)
			captured = NF_MAX_SNAPLEN;
	}
	struct nf_event_ring *ring;
	struct nf_event *e = nf_event_reserve(&event_rings, nf_event_record_bytes(captured), &ring);

	if (!e) {
		count_stat(NF_STAT_EVENTS_LOST);
		return;
	}
	/* Written in place, every byte: the ring's memory holds an older record. */
	e->timestamp_ns = now;
	e->ifindex = skb->ifindex;
	e->pod_id = pod_id;
	e->rule_id = rule_id;
	e->length = skb->len;
	e->revision = pod->revision;
	__builtin_memcpy(e->saddr, p->flow.saddr, NF_ADDRESS_BYTES);
	__builtin_memcpy(e->daddr, p->flow.daddr, NF_ADDRESS_BYTES);
	e->sport = p->flow.sport;
	e->dport = p->flow.dport;
	e->direction = direction;
	e->family = p->family;
	e->protocol = p->flow.protocol;
	e->verdict = verdict;
	e->tier = tier;
	e->reason = reason;
	*(__u64 *)e->pad = 0;
	if (captured > NF_MAX_SNAPLEN) /* for the verifier: the copy stays within the overflow */
		return;
	if (captured && bpf_skb_load_bytes(skb, 0, e + 1, captured))
		captured = 0;
	e->captured = captured;
	nf_event_publish(&event_doorbell, ring, nf_event_record_bytes(captured), now);
}

/* ---- Conntrack and fragments ---- */

/* Whether endpoint A orders after endpoint B (address, then port): any total
 * order works, as long as both directions of a flow agree on it. */
static __always_inline int endpoint_after(const __u8 *a, __u16 a_port, const __u8 *b, __u16 b_port)
{
	__u64 a_high, a_low, b_high, b_low;

	__builtin_memcpy(&a_high, a, 8);
	__builtin_memcpy(&a_low, a + 8, 8);
	__builtin_memcpy(&b_high, b, 8);
	__builtin_memcpy(&b_low, b + 8, 8);
	if (a_high != b_high)
		return a_high > b_high;
	if (a_low != b_low)
		return a_low > b_low;
	return a_port > b_port;
}

/* The key of T's flow on IFINDEX; returns whether T runs from the high
 * endpoint to the low one. */
static __always_inline int conntrack_key(struct nf_conntrack_key *key, __u32 ifindex, __u8 family,
					 const struct tuple *t)
{
	int from_high = endpoint_after(t->saddr, t->sport, t->daddr, t->dport);

	key->ifindex = ifindex; /* every field is written: no memset on the hot path */
	key->family = family;
	key->protocol = t->protocol;
	key->pad = 0;
	__builtin_memcpy(key->addr_low, from_high ? t->daddr : t->saddr, NF_ADDRESS_BYTES);
	__builtin_memcpy(key->addr_high, from_high ? t->saddr : t->daddr, NF_ADDRESS_BYTES);
	key->port_low = from_high ? t->dport : t->sport;
	key->port_high = from_high ? t->sport : t->dport;
	return from_high;
}

/* A tracked flow of an older revision: decide its first packet again.
 * Returns whether it still stands (its entry refreshed); otherwise deletes it. */
static __always_inline int revalidate(const struct nf_pod *pod, struct nf_conntrack_key *key,
				      struct nf_conntrack_value *entry, struct decision *d)
{
	int from_high = entry->flags & NF_CONNTRACK_FIRST_FROM_HIGH;
	struct tuple first = {};

	__builtin_memcpy(first.saddr, from_high ? key->addr_high : key->addr_low, NF_ADDRESS_BYTES);
	__builtin_memcpy(first.daddr, from_high ? key->addr_low : key->addr_high, NF_ADDRESS_BYTES);
	evaluate(pod, entry->direction, key->family, peer_of(&first, entry->direction), key->protocol,
		 from_high ? key->port_low : key->port_high, 1, d);
	if (d->verdict != NF_VERDICT_ALLOW) {
		bpf_map_delete_elem(&conntrack, key);
		return 0;
	}
	entry->revision = pod->revision;
	entry->rule_id = d->rule_id;
	entry->tier = d->tier;
	return 1;
}

/* The entry of the flow KEY names, its last-seen time refreshed, or NULL. */
static __always_inline struct nf_conntrack_value *conntrack_lookup(struct nf_conntrack_key *key)
{
	struct nf_conntrack_value *entry = bpf_map_lookup_elem(&conntrack, key);

	if (entry) {
		/* the coarse clock moves every few ms: store only then, so busy
		 * flows do not bounce the entry's cache line between CPUs */
		__u64 now = coarse_now();

		if (entry->last_seen_ns != now)
			entry->last_seen_ns = now;
	}
	return entry;
}

static __always_inline int revision_current(__u32 pod_id, __u32 revision)
{
	__u32 *current = bpf_map_lookup_elem(&revisions, &pod_id);

	return current && *current == revision;
}

/* Whether the entry was allowed under its pod's current revision. */
static __always_inline int conntrack_current(const struct nf_conntrack_value *entry)
{
	return revision_current(entry->pod_id, entry->revision);
}

/* Each CPU's recent conntrack hits, copied so that a flow's next packets skip
 * the hash map. Its lookup is three calls (the hash, the bucket walk, the key
 * compare), and in real traffic on a CPU with return-stack mitigations each
 * call costs 25-45 ns: half of what the established path added to an empty
 * program (docs/datapath.md). A copy holds only in the jiffy it was made in
 * (the next jiffy's packet looks the entry up again and refreshes its
 * last-seen time, as every packet did) and while its pod's revision stands:
 * a change of policy ends every copy at once; an entry deleted by a flush or
 * an eviction outlives its copies by one tick at most. */
#define FLOW_CACHE_BITS 8
#define FLOW_CACHE_SLOTS (1 << FLOW_CACHE_BITS)

struct flow_copy {
	struct tuple flow; /* as the packet carries it: no ordering to build first */
	__u32 ifindex;
	__u32 family;
	__u32 pod_id;
	__u32 revision;
	__u64 jiffies;
};

struct flow_cache {
	struct flow_copy slot[FLOW_CACHE_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_cache);
} flow_cache SEC(".maps");

/* A tuple as the flow cache reads it: five words (struct tuple, aligned). */
#define FLOW_WORDS (sizeof(struct tuple) / 8)

/* The slot of FLOW on IFINDEX in this CPU's flow cache (Fibonacci hashing of
 * the halves that differ between flows: the addresses' last four bytes, the
 * ports; a collision only costs a lookup). */
static __always_inline struct flow_copy *flow_cache_slot(const __u64 *flow, __u32 ifindex)
{
	__u32 zero = 0;
	struct flow_cache *cache = bpf_map_lookup_elem(&flow_cache, &zero);
	__u32 mixed = (__u32)(flow[1] >> 32) ^ (__u32)(flow[3] >> 32) ^ (__u32)flow[4] ^ (ifindex << 7);

	if (!cache)
		return NULL;
	return &cache->slot[(mixed * 0x9e3779b1u) >> (32 - FLOW_CACHE_BITS)];
}

/* Whether COPY holds FLOW (of FAMILY) on IFINDEX, made this jiffy under its pod's current revision. */
static __always_inline int flow_copy_holds(const struct flow_copy *copy, const __u64 *flow, __u8 family, __u32 ifindex,
					   __u64 jiffies)
{
	const __u64 *held = (const __u64 *)&copy->flow;
	__u64 differ = 0;

	if (copy->jiffies != jiffies || copy->ifindex != ifindex || copy->family != family)
		return 0;
#pragma unroll
	for (int i = 0; i < FLOW_WORDS; i++)
		differ |= held[i] ^ flow[i];
	return !differ && revision_current(copy->pod_id, copy->revision);
}

/* The words parse() would yield (FLOW_WORDS) for the packet nearly every
 * established flow carries: IPv4 without options or IPv6 without extension
 * headers, carrying TCP, UDP or SCTP, not a fragment. Read straight from the
 * frame into registers (little-endian, as struct tuple lies in memory: an IPv4
 * address mapped as ::ffff:a.b.c.d); returns the family, or 0 for any other
 * packet, which parse() reads. */
static __always_inline __u8 common_flow(struct __sk_buff *skb, __u64 *flow)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__be16 *ports;
	__u8 family, protocol;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		ports = (void *)(ip + 1);
		if ((void *)(ports + 2) > data_end || ip->version != 4 || ip->ihl != 5 ||
		    (ip->frag_off & bpf_htons(IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET_MASK)))
			return 0;
		flow[0] = flow[2] = 0;
		flow[1] = (__u64)ip->saddr << 32 | 0xffff0000;
		flow[3] = (__u64)ip->daddr << 32 | 0xffff0000;
		protocol = ip->protocol;
		family = NF_FAMILY_IPV4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip = (void *)(eth + 1);

		ports = (void *)(ip + 1);
		if ((void *)(ports + 2) > data_end || ip->version != 6)
			return 0;
		__builtin_memcpy(flow, &ip->saddr, 2 * NF_ADDRESS_BYTES); /* daddr follows saddr, in both */
		protocol = ip->nexthdr;
		family = NF_FAMILY_IPV6;
	} else {
		return 0;
	}
	if (protocol != NF_PROTOCOL_TCP && protocol != NF_PROTOCOL_UDP && protocol != NF_PROTOCOL_SCTP)
		return 0;
	flow[4] = bpf_ntohs(ports[0]) | (__u32)bpf_ntohs(ports[1]) << 16 | (__u64)protocol << 32;
	return family;
}

/* Whether P's flow on IFINDEX is tracked and was allowed under its pod's current
 * revision (*POD_ID), by the flow's entry, which is then copied into this CPU's
 * flow cache for the search ahead of everything (enforce); that search already
 * missed, or could not read the packet. KEY is the flow's key; *TRACKED its entry. */
static __always_inline int tracked_and_current(const struct packet *p, __u32 ifindex, struct nf_conntrack_key *key,
					       struct nf_conntrack_value **tracked, __u32 *pod_id)
{
	conntrack_key(key, ifindex, p->family, &p->flow);
	struct nf_conntrack_value *entry = conntrack_lookup(key);

	*tracked = entry;
	if (!entry || !conntrack_current(entry))
		return 0;
	*pod_id = entry->pod_id;
	struct flow_copy *copy = flow_cache_slot((const __u64 *)&p->flow, ifindex);

	if (copy) {
		copy->flow = p->flow;
		copy->ifindex = ifindex;
		copy->family = p->family;
		copy->pod_id = entry->pod_id;
		copy->revision = entry->revision;
		copy->jiffies = bpf_jiffies64();
	}
	return 1;
}

static __always_inline void conntrack_insert(struct __sk_buff *skb, const struct nf_pod *pod, const struct packet *p,
					     __u8 direction, const struct decision *d, __u64 now)
{
	struct nf_conntrack_key key;
	struct nf_conntrack_value entry = {
		.last_seen_ns = now,
		.revision = pod->revision,
		.rule_id = d->rule_id,
		.pod_id = pod->pod_id,
		.direction = direction,
		.tier = d->tier,
	};

	if (conntrack_key(&key, skb->ifindex, p->family, &p->flow))
		entry.flags = NF_CONNTRACK_FIRST_FROM_HIGH;
	if (bpf_map_update_elem(&conntrack, &key, &entry, BPF_ANY))
		count_stat(NF_STAT_CONNTRACK_FULL);
}

/* An ICMP error about a flow of the pod, in either of its directions. */
static __always_inline int related_to_tracked_flow(struct __sk_buff *skb, const struct nf_pod *pod, const struct packet *p)
{
	struct nf_conntrack_key key;

	conntrack_key(&key, skb->ifindex, p->family, &p->inner);
	struct nf_conntrack_value *entry = bpf_map_lookup_elem(&conntrack, &key);
	return entry && entry->pod_id == pod->pod_id;
}

static __always_inline void fragment_key(struct nf_fragment_key *key, __u32 ifindex, const struct packet *p)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->ifindex = ifindex;
	key->id = p->fragment_id;
	key->family = p->family;
	key->protocol = p->flow.protocol;
	__builtin_memcpy(key->saddr, p->flow.saddr, NF_ADDRESS_BYTES);
	__builtin_memcpy(key->daddr, p->flow.daddr, NF_ADDRESS_BYTES);
}

/* ---- The program ---- */

/* Later fragments of this datagram will get this decision. */
static __always_inline void remember_fragment(__u32 ifindex, const struct packet *p, const struct decision *d)
{
	struct nf_fragment_key key;
	struct nf_fragment_value value = {
		.rule_id = d->rule_id,
		.sport = p->flow.sport,
		.dport = p->flow.dport,
		.verdict = d->verdict,
		.tier = d->tier,
	};

	fragment_key(&key, ifindex, p);
	bpf_map_update_elem(&fragments, &key, &value, BPF_ANY);
}

static __always_inline int finish(struct __sk_buff *skb, const struct nf_pod *pod, const struct packet *p,
				  __u8 direction, const struct decision *d, __u8 reason, __u64 now)
{
	if (p->first_fragment)
		remember_fragment(skb->ifindex, p, d);
	count_packet(skb, pod->pod_id, direction, d->verdict);
	emit_event(skb, pod, p, direction, d->verdict, d->tier, d->rule_id, reason, now);
	return d->verdict == NF_VERDICT_ALLOW ? TC_ACT_OK : TC_ACT_SHOT;
}

/* Explain (a test run marked NF_EXPLAIN_MARK / NF_EXPLAIN_COOKIE): the packet
 * judged as a new flow of the pod on its interface, the decision written into
 * the context, nothing else changed. */
static __always_inline int explain(struct __sk_buff *skb, __u8 direction)
{
	__u32 ifindex = skb->ifindex;
	struct nf_pod *pod = bpf_map_lookup_elem(&pods, &ifindex);
	struct packet p;
	struct decision d = {};

	skb->cb[2] = skb->cb[3] = NF_EXPLAIN_NONE;
	if (!pod || parse(skb, &p) != PARSE_OK || p.later_fragment)
		return TC_ACT_OK;
	evaluate(pod, direction, p.family, peer_of(&p.flow, direction), p.flow.protocol, p.flow.dport, 0, &d);
	skb->cb[1] = d.rule_id;
	skb->cb[2] = d.verdict | (__u32)d.tier << 8 | (__u32)d.reason << 16;
	if (d.audited) {
		skb->cb[3] = d.audit_verdict | (__u32)d.audit_tier << 8 | (__u32)d.audit_reason << 16;
		skb->cb[4] = d.audit_rule_id;
	}
	return d.verdict == NF_VERDICT_ALLOW ? TC_ACT_OK : TC_ACT_SHOT;
}

/* Every packet the established path below does not allow: explain, parsing,
 * conntrack, policy. */
static __always_inline int judge(struct __sk_buff *skb, __u8 direction)
{
	if (skb->mark == NF_EXPLAIN_MARK && skb->cb[0] == NF_EXPLAIN_COOKIE)
		return explain(skb, direction);
	__u32 ifindex = skb->ifindex;
	struct nf_conntrack_key flow_key;
	struct packet p; /* parse() clears what is read */
	struct decision d = {};
	int parsed = parse(skb, &p);

	if (parsed == PARSE_PASS)
		return TC_ACT_OK;

	/* The fast path: later packets and replies of a flow allowed under the
	 * pod's current revision, from this CPU's copy or one hash lookup. */
	struct nf_conntrack_value *tracked = NULL;
	__u32 tracked_pod;

	if (parsed == PARSE_OK && !p.later_fragment && tracked_and_current(&p, ifindex, &flow_key, &tracked, &tracked_pod)) {
		d.verdict = NF_VERDICT_ALLOW;
		if (p.first_fragment)
			remember_fragment(ifindex, &p, &d);
		count_packet(skb, tracked_pod, direction, NF_VERDICT_ALLOW);
		return TC_ACT_OK;
	}

	struct nf_pod *pod = bpf_map_lookup_elem(&pods, &ifindex);

	if (!pod) {
		count_stat(NF_STAT_UNKNOWN_INTERFACE);
		return TC_ACT_OK;
	}
	/* The slow path reads the clock once: conntrack, hits and events share it. */
	__u64 now = coarse_now();

	if (parsed == PARSE_BAD) {
		if (!enforced(pod, direction))
			return TC_ACT_OK;
		count_stat(NF_STAT_UNPARSEABLE_DROPS);
		d.verdict = NF_VERDICT_DENY;
		return finish(skb, pod, &p, direction, &d, NF_REASON_UNPARSEABLE, now);
	}

	if (p.later_fragment) {
		struct nf_fragment_key key;

		fragment_key(&key, ifindex, &p);
		struct nf_fragment_value *first = bpf_map_lookup_elem(&fragments, &key);
		if (first) {
			d.verdict = first->verdict;
			d.tier = first->tier;
			d.rule_id = first->rule_id;
			p.flow.sport = first->sport;
			p.flow.dport = first->dport;
			return finish(skb, pod, &p, direction, &d, NF_REASON_FRAGMENT, now);
		}
		if (!enforced(pod, direction))
			return TC_ACT_OK;
		d.verdict = NF_VERDICT_DENY;
		return finish(skb, pod, &p, direction, &d, NF_REASON_NO_FIRST_FRAGMENT, now);
	}

	/* An entry naming another pod was left by one detached from this interface
	 * (swept later, see NF_REGISTRATION_DETACHED): this pod's packets never use it,
	 * and a new flow of the same tuple replaces it. */
	if (tracked && tracked->pod_id != pod->pod_id)
		tracked = NULL;

	/* A flow of an older revision: still allowed, or judged anew below. */
	if (tracked && revalidate(pod, &flow_key, tracked, &d))
		return finish(skb, pod, &p, direction, &d, NF_REASON_REEVALUATED, now);

	if (p.icmp_error && related_to_tracked_flow(skb, pod, &p)) {
		d.verdict = NF_VERDICT_ALLOW;
		return finish(skb, pod, &p, direction, &d, NF_REASON_RELATED, now);
	}

	evaluate(pod, direction, p.family, peer_of(&p.flow, direction), p.flow.protocol, p.flow.dport, 0, &d);
	if (d.verdict == NF_VERDICT_ALLOW)
		conntrack_insert(skb, pod, &p, direction, &d, now);
	count_hit(pod, direction, d.rule_id, d.tier, d.verdict, 0, now);
	if (d.audited && d.audit_verdict != d.verdict) {
		count_hit(pod, direction, d.audit_rule_id, d.audit_tier, d.audit_verdict, 1, now);
		emit_event(skb, pod, &p, direction, NF_VERDICT_AUDIT, d.audit_tier, d.audit_rule_id,
			   d.audit_verdict == NF_VERDICT_ALLOW ? NF_REASON_AUDIT_WOULD_ALLOW : NF_REASON_AUDIT_WOULD_DENY, now);
	}
	return finish(skb, pod, &p, direction, &d, d.reason, now);
}

/* The established path, first and small: in real traffic its cost is mostly
 * the code it fetches (docs/datapath.md). A flow this CPU copied this jiffy, in
 * the packet nearly every flow carries, is allowed and counted here; anything
 * else, and every test run's packet (explain), goes to judge(). */
static __always_inline int enforce(struct __sk_buff *skb, __u8 direction)
{
	__u32 ifindex = skb->ifindex;
	__u64 flow[FLOW_WORDS];

	if (skb->mark != NF_EXPLAIN_MARK) {
		__u8 family = common_flow(skb, flow);
		struct flow_copy *copy = family ? flow_cache_slot(flow, ifindex) : NULL;

		if (copy && flow_copy_holds(copy, flow, family, ifindex, bpf_jiffies64())) {
			count_packet(skb, copy->pod_id, direction, NF_VERDICT_ALLOW);
			return TC_ACT_OK;
		}
	}
	return judge(skb, direction);
}

/* On the host veth's tc egress hook: what the pod receives. */
SEC("tc")
int nf_to_pod(struct __sk_buff *skb)
{
	return enforce(skb, NF_DIRECTION_INGRESS);
}

/* On the host veth's tc ingress hook: what the pod sends. */
SEC("tc")
int nf_from_pod(struct __sk_buff *skb)
{
	return enforce(skb, NF_DIRECTION_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
