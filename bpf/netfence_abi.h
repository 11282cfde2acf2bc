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

/* Value of the demo's counters, and of the datapath's per-pod counters. */
struct nf_packet_counter {
	__u64 packets;
	__u64 bytes;
};

/* ---- Capacities (documented in docs/datapath.md; the loader rejects more) ---- */

/* Port rules one prefix of a pod's trie can carry, after the compiler merged
 * the rules of every enclosing prefix into it (the AWS agent: 24, silently). */
#define NF_MAX_RULES_PER_PREFIX 32
/* Prefixes in one pod's trie for one direction. */
#define NF_MAX_PREFIXES 65536
/* Pods one node can register; pod ids are 0 .. NF_MAX_PODS-1. */
#define NF_MAX_PODS 4096
/* Connections the global conntrack table keeps (LRU). */
#define NF_CONNTRACK_ENTRIES (512 * 1024)
/* Fragmented datagrams whose first fragment's verdict is remembered (LRU). */
#define NF_FRAGMENT_ENTRIES 16384
/* Bytes of each CPU's verdict event ring (a power of two; struct nf_event_ring). */
#define NF_EVENT_CPU_RING_BYTES (256 * 1024)
/* Bytes of the ring buffer that only wakes the event reader (event_doorbell). */
#define NF_EVENT_DOORBELL_BYTES (64 * 1024)
/* A reader waiting for events reads the rings at least this often: the datapath wakes it only
 * once a quarter of a CPU's ring is waiting. */
#define NF_EVENT_READER_POLL_MS 250
/* IPv6 extension headers walked before giving up on a packet. */
#define NF_MAX_IPV6_EXTENSIONS 8
/* (pod, address) pairs the DNS proxy granted (docs/dns.md). */
#define NF_DOMAIN_GRANT_ENTRIES (256 * 1024)
/* Domain patterns one grant can name: the pod's patterns that allowed names
 * resolving to that one address. */
#define NF_MAX_PATTERNS_PER_GRANT 8
/* (pod, slot, pattern) rule sets of domain rules on the node. */
#define NF_DOMAIN_RULE_ENTRIES 65536
/* Addresses DNS proxies listen on. */
#define NF_MAX_DNS_PROXIES 16
/* The port pods send DNS to. */
#define NF_DNS_PORT 53
/* How long after a DNS proxy's last heartbeat grants still allow new flows. */
#define NF_DNS_HEARTBEAT_TIMEOUT_NS 3000000000ULL /* 3 s */

/* Addresses are 16 bytes everywhere; IPv4 is mapped (::ffff:a.b.c.d) and its
 * prefix lengths shifted by 96, so one code path serves both. The family is
 * kept beside the address wherever addresses are matched (the trie key leads
 * with it), so a prefix of one family never matches the other: IPv6 ::/0 does
 * not cover IPv4. */
#define NF_ADDRESS_BYTES 16
#define NF_IPV4_MAPPED_PREFIX 96

/* ---- Enumerations ---- */

enum nf_family {
	NF_FAMILY_IPV4 = 4,
	NF_FAMILY_IPV6 = 6,
};

/* Protocols are IANA numbers; a rule may also match any protocol. */
enum nf_protocol {
	NF_PROTOCOL_ICMP = 1,
	NF_PROTOCOL_TCP = 6,
	NF_PROTOCOL_UDP = 17,
	NF_PROTOCOL_ICMPV6 = 58,
	NF_PROTOCOL_SCTP = 132,
	NF_PROTOCOL_ANY = 255,
};

/* The tiers, in evaluation order. */
enum nf_tier {
	NF_TIER_NONE = 0,           /* no tier decided (conntrack, parse errors) */
	NF_TIER_ADMIN = 1,          /* ClusterNetworkPolicy, Admin */
	NF_TIER_NETWORK_POLICY = 2, /* Kubernetes NetworkPolicy (PolicyEndpoints) */
	NF_TIER_BASELINE = 3,       /* ClusterNetworkPolicy, Baseline */
	NF_TIER_DEFAULT = 4,        /* the pod's default for the direction */
};

/* Rule actions; at equal priority the lower value wins (Deny > Accept > Pass). */
enum nf_action {
	NF_ACTION_DENY = 0,
	NF_ACTION_ACCEPT = 1,
	NF_ACTION_PASS = 2,
};

/* What a pod does in a direction when no Admin rule decides. */
enum nf_pod_state {
	NF_POD_DEFAULT_ALLOW = 0,    /* not selected by a NetworkPolicy: Baseline, then allow */
	NF_POD_DEFAULT_DENY = 1,     /* strict mode: Baseline, then deny */
	NF_POD_POLICIES_APPLIED = 2, /* selected by a NetworkPolicy: that tier decides */
};

enum nf_verdict {
	NF_VERDICT_DENY = 0,
	NF_VERDICT_ALLOW = 1,
	NF_VERDICT_AUDIT = 2, /* events only: what audit objects would have decided (reason says which way) */
};

/* Why a verdict was reached, for events. */
enum nf_reason {
	NF_REASON_POLICY = 0,        /* the tiers decided a new flow */
	NF_REASON_REEVALUATED = 1,   /* a flow of an older policy revision, decided again */
	NF_REASON_RELATED = 2,       /* an ICMP error of a tracked flow */
	NF_REASON_FRAGMENT = 3,      /* a later fragment, given its first fragment's verdict */
	NF_REASON_UNPARSEABLE = 4,   /* headers truncated or malformed */
	NF_REASON_NO_FIRST_FRAGMENT = 5, /* a later fragment whose first was never seen */
	NF_REASON_DOMAIN_EXPIRED = 6, /* the pod resolved the peer by a domain rule, but its TTL ran out */
	NF_REASON_DNS_PROXY = 7,      /* DNS of a pod with domain rules, to the DNS proxy */
	NF_REASON_DNS_BYPASS = 8,     /* DNS of a pod with domain rules, to another resolver */
	NF_REASON_DNS_PROXY_DOWN = 9, /* the pod resolved the peer by a domain rule, but no DNS proxy is alive */
	NF_REASON_AUDIT_WOULD_DENY = 10,  /* with audit objects enforced this new flow would be denied */
	NF_REASON_AUDIT_WOULD_ALLOW = 11, /* ... would be allowed */
};

/* Which verdicts produce ring-buffer events (settings.event_level). */
enum nf_event_level {
	NF_EVENTS_NONE = 0,
	NF_EVENTS_DENY = 1,
	NF_EVENTS_ALL = 2,
};

/* Node-wide counters (stats map, per CPU). */
enum nf_stat {
	NF_STAT_EVENTS_LOST = 0,       /* ring buffer full: an event was not written */
	NF_STAT_UNPARSEABLE_DROPS = 1, /* packets dropped because they could not be parsed */
	NF_STAT_UNKNOWN_INTERFACE = 2, /* packets on an interface with no registered pod */
	NF_STAT_CONNTRACK_FULL = 3,    /* conntrack inserts that failed */
	NF_STAT_COUNT = 4,
};

/* ---- Maps: keys and values ---- */

/* pods: the pod behind a host veth, by ifindex. The loader replaces the whole
 * value in one update, which flips the tries, domain-rule slot, states and
 * revision together. */
struct nf_pod {
	__u32 pod_id;   /* < NF_MAX_PODS; indexes counters */
	__u32 revision; /* bumped on every policy change; conntrack entries carry it */
	__u8 slot;      /* which of the pod's two domain-rule slots is live */
	__u8 state[NF_DIRECTION_COUNT]; /* enum nf_pod_state, by enum nf_direction */
	__u8 flags;     /* NF_POD_* */
	__u16 trie[NF_DIRECTION_COUNT]; /* index in policies of the direction's trie, NF_NO_TRIE: none */
};

/* The pod has egress rules by domain name: its DNS goes to a DNS proxy only,
 * and its new egress flows consult its domain grants. */
#define NF_POD_DOMAIN_RULES 0x1
/* Audit objects select the pod: a new flow is also decided with them enforced
 * (rules marked NF_RULE_AUDIT count, and the states below apply), and an event
 * says so when that decision's verdict differs. Never changes a verdict. */
#define NF_POD_AUDIT 0x2
/* With audit objects enforced, the pod's state per direction (enum nf_pod_state),
 * two bits each from this shift, by enum nf_direction. */
#define NF_POD_AUDIT_STATE_SHIFT 2
#define nf_pod_audit_state(flags, direction) (((flags) >> (NF_POD_AUDIT_STATE_SHIFT + 2 * (direction))) & 3)
/* The direction's trie (bit 6 ingress, bit 7 egress) holds audit rules only: for
 * what is enforced the pod has no trie there (unreadable packets still pass). */
#define NF_POD_AUDIT_ONLY_TRIE 0x40

/* revisions (array, by pod id): each pod's current policy revision, for the
 * conntrack fast path. The loader writes it after the pods record, so a packet
 * in between is judged by the old policy or re-evaluated under the new one. */

/* policies (array of maps): the tries pods' records name. Pods whose policy in
 * a direction is identical share one trie (the loader finds it by digest); a
 * change builds a trie at a free index and flips records to it, so every pod
 * direction can hold a live trie and one being built. An array lookup is
 * inlined by the verifier; a hash lookup is a call. */
#define NF_POLICY_ENTRIES (NF_MAX_PODS * 4) /* per pod: 2 directions, a live trie and one being built each */
/* A record's trie index for "no trie": past the array, so its lookup finds nothing. */
#define NF_NO_TRIE 0xffff

/* policy_digests (array, by policies index): what the trie at that index
 * holds, so the loader can share it. The loader's alone: programs never read it. */
struct nf_policy_digest {
	__u32 map_id;    /* the trie the digest describes: another map at the index makes it stale */
	__u8 sha256[32]; /* SHA-256 of the trie's entries in canonical order (docs/datapath.md),
			  * or a role below: 31 zero bytes, then the role */
};

/* An index whose trie holds no policy yet: what `loader serve`'s keeper, or
 * commands on their next wait, keep ready so a change fills a trie already in
 * policies instead of waiting for a grace period to insert one (docs/loader.md). */
enum nf_trie_role {
	NF_TRIE_SPARE = 1,    /* an empty trie no record names: a change may fill it */
	NF_TRIE_ARRIVING = 2, /* an empty trie (map_id) the keeper is inserting at this index */
	NF_TRIE_COOLING = 3,  /* a trie no record names any more, waiting out a grace period
			       * before it is emptied into a spare */
};

/* Key of a pod's trie: the peer's family, then its prefix. The family byte is
 * the first 8 bits every prefix fixes, so an IPv6 ::/0 (prefixlen 8) covers
 * IPv6 addresses only. */
#define NF_LPM_FAMILY_BITS 8
struct nf_lpm_key {
	__u32 prefixlen; /* NF_LPM_FAMILY_BITS + 0..128; IPv4 prefixes are 8 + 96 + n */
	__u8 family;     /* enum nf_family */
	__u8 address[NF_ADDRESS_BYTES];
	__u8 pad[3];     /* past every prefixlen: never compared */
};

/* One rule of a prefix: protocol, ports, and what it does in which tier. */
struct nf_port_rule {
	__u32 rule_id;    /* the loader's id, for event attribution */
	__u16 port_start; /* 0: every port (and protocols without ports) */
	__u16 port_end;   /* inclusive; equals port_start for a single port */
	__u16 priority;   /* lower wins within a cluster tier; 0 for NetworkPolicy */
	__u8 protocol;    /* enum nf_protocol */
	__u8 tier;        /* enum nf_tier: ADMIN, NETWORK_POLICY or BASELINE */
	__u8 action;      /* enum nf_action; NetworkPolicy rules are ACCEPT */
	__u8 flags;       /* NF_RULE_* */
	__u8 pad[2];
};

/* A rule of an audit object: it decides nothing, it says what would be decided. */
#define NF_RULE_AUDIT 0x1

/* Value of a pod's trie: every rule that applies to peers in the prefix. */
struct nf_rule_set {
	__u32 count; /* rules[0 .. count-1] are valid */
	__u32 pad;
	struct nf_port_rule rules[NF_MAX_RULES_PER_PREFIX];
};

/* conntrack: a flow on the pod's interface, under one key for both of its
 * directions: the endpoint that orders lower (address, then port) comes first,
 * so a packet and its reply find the same entry with one lookup. */
struct nf_conntrack_key {
	__u32 ifindex;
	__u8 family;   /* enum nf_family */
	__u8 protocol; /* IANA number */
	__u16 pad;
	__u8 addr_low[NF_ADDRESS_BYTES];
	__u8 addr_high[NF_ADDRESS_BYTES];
	__u16 port_low; /* host order; ICMP echo: the identifier in both */
	__u16 port_high;
};

/* The first packet of the flow went from the high endpoint to the low one. */
#define NF_CONNTRACK_FIRST_FROM_HIGH 0x1

struct nf_conntrack_value {
	__u64 last_seen_ns; /* CLOCK_MONOTONIC, coarse (bpf_ktime_get_coarse_ns) */
	__u32 revision;     /* the pod's policy revision that allowed the flow */
	__u32 rule_id;      /* the rule that allowed it */
	__u32 pod_id;       /* lets the fast path skip the pods lookup */
	__u8 direction;     /* enum nf_direction of the first packet, pod's view */
	__u8 tier;          /* enum nf_tier that allowed it */
	__u8 flags;         /* NF_CONNTRACK_FIRST_FROM_HIGH */
	__u8 pad;
};

/* fragments: a datagram's first-fragment verdict, for its later fragments. */
struct nf_fragment_key {
	__u32 ifindex;
	__u32 id; /* IPv4 identification or IPv6 fragment identification */
	__u8 family;
	__u8 protocol;
	__u16 pad;
	__u8 saddr[NF_ADDRESS_BYTES];
	__u8 daddr[NF_ADDRESS_BYTES];
};

struct nf_fragment_value {
	__u32 rule_id;
	__u16 sport;
	__u16 dport;
	__u8 verdict; /* enum nf_verdict */
	__u8 tier;
	__u8 pad[2];
};

/* domain_rules: the port rules of one domain pattern of a pod's policy, per
 * slot like the tries, so they flip with the pod record. */
struct nf_domain_rule_key {
	__u32 pod_id;
	__u32 slot;
	__u64 pattern; /* FNV-1a 64 of the pattern as policy spells it: `*.example.com` */
};
/* value: struct nf_rule_set */

/* domain_grants: an address a pod resolved through the DNS proxy, with each
 * pattern that allowed the name and until when. Written before the answer is
 * released; entries outlive their expiry so established flows survive a policy
 * change (the proxy removes them later). */
struct nf_domain_grant_key {
	__u32 pod_id;
	__u8 address[NF_ADDRESS_BYTES];
};

struct nf_domain_grant_pattern {
	__u64 pattern;    /* as in nf_domain_rule_key */
	__u64 expires_ns; /* CLOCK_MONOTONIC */
};

struct nf_domain_grant {
	__u32 count; /* patterns[0 .. count-1] are valid */
	__u32 pad;
	struct nf_domain_grant_pattern patterns[NF_MAX_PATTERNS_PER_GRANT];
};

/* dns_proxies: an address a DNS proxy serves (key: 16 bytes, IPv4 mapped).
 * Pods with domain rules may send DNS there and nowhere else. The entry stays
 * when the proxy stops, so its pods fail closed. */
struct nf_dns_proxy {
	__u32 pid;        /* the serving process; 0 once it stopped */
	__u16 port;       /* where it listens (pods send to NF_DNS_PORT) */
	__u16 pad;
	__u64 started_ns; /* CLOCK_REALTIME */
};

/* dns_heartbeat (array, one __u64): CLOCK_MONOTONIC of a DNS proxy's last
 * heartbeat. Older than NF_DNS_HEARTBEAT_TIMEOUT_NS, no grant allows a new flow:
 * domain rules fail closed while no proxy runs. */

/* generations (array, BPF_F_MMAPABLE, one __u64 per enum nf_generation): how many
 * times netfence changed the pods map (a record written or deleted) and the
 * domain_grants map, each bumped after its change. No program reads them: a
 * process that keeps what it read of those maps (the DNS proxy) maps this one and
 * reads again only when the count it read at has moved, with no call. */
enum nf_generation {
	NF_GENERATION_PODS = 0,
	NF_GENERATION_GRANTS = 1,
	NF_GENERATION_COUNT = 2,
};

/* rule_hits (LRU per-CPU hash): the new flows each rule decided, per pod. A rule
 * id of 0 stands for what has no rule: the pod's isolation (NETWORK_POLICY tier)
 * or its default (DEFAULT tier) in that direction. With AUDIT set: the new flows
 * audit objects would have decided otherwise (each raised an audit event).
 * Counted on new flows only: the conntrack fast path never touches it. */
#define NF_RULE_HIT_ENTRIES 65536
struct nf_hit_key {
	__u32 rule_id;
	__u32 pod_id;
	__u8 direction; /* enum nf_direction */
	__u8 tier;      /* enum nf_tier of the decision */
	__u8 audit;     /* 1: the decision with audit objects enforced */
	__u8 pad;
};

struct nf_hit_value {
	__u64 allowed;
	__u64 denied;
	__u64 last_ns; /* CLOCK_MONOTONIC of the last new flow it decided (per CPU: the latest wins) */
};

/* Explain: a BPF_PROG_TEST_RUN packet carrying this mark and cookie (cb[0]) is
 * judged as a new flow and changes nothing: no conntrack lookup, insert or
 * refresh, no fragment memory, no counter, no hit, no event. The decision
 * comes back in the context: cb[1] the rule id, cb[2] verdict | tier << 8 |
 * reason << 16 (NF_EXPLAIN_NONE: not judged, no pod or not a new flow's
 * packet), cb[3] the same for the audit decision (NF_EXPLAIN_NONE when no
 * audit object selects the pod), cb[4] its rule id. A packet crossing a veth
 * from a pod arrives with its mark cleared, so only a test run can carry both
 * values. */
#define NF_EXPLAIN_MARK 0x4e464558u   /* "NFEX" */
#define NF_EXPLAIN_COOKIE 0x6578706cu /* "expl" */
#define NF_EXPLAIN_NONE 0xffffffffu

/* settings: runtime knobs, one entry, changed without reloading. */
struct nf_settings {
	__u32 event_level;     /* enum nf_event_level, for pods without their own */
	__u16 snaplen;         /* bytes of an event's packet captured after its record (0: none) */
	__u8 capture_verdicts; /* enum nf_capture_verdicts: the events that carry their packet */
	__u8 pad;
	__u32 pod_event_rate;  /* events a second per pod and direction (0: no limit) */
	__u32 node_event_rate; /* events a second for the whole node (0: no limit) */
};

enum nf_capture_verdicts {
	NF_CAPTURE_DENIED = 0, /* events of denied packets, and audit events */
	NF_CAPTURE_ALL = 1,
};

/* Captures go into the event record; what a capture may hold at most. */
#define NF_MAX_SNAPLEN 512
#define NF_DEFAULT_SNAPLEN 128

/* pod_event_levels (array, by pod id): a pod's own event level, set for
 * debugging one workload while the node stays at its level. The loader
 * clears it when a pod id is given to another pod. */
struct nf_pod_event_level {
	__u8 overridden; /* 1: level applies to the pod instead of settings.event_level */
	__u8 level;      /* enum nf_event_level */
	__u8 pad[2];
};

/* event_limits (array): the rate limiter of events, at index
 * nf_event_limit_index(pod_id, direction) per pod and direction and at
 * NF_NODE_EVENT_LIMIT for the node. A window of one second starts with the
 * first event after the last one ended; events beyond the rate within it are
 * not written but counted in the pod's entry, by verdict (those the node's
 * limit suppressed too). Shared by all CPUs, updated atomically: every event
 * is either written or counted. The loader zeroes a pod id's entries when it
 * gives the id to another pod. */
struct nf_event_counts {
	__u64 by_verdict[3]; /* by enum nf_verdict */
};

struct nf_event_limit {
	__u64 window_start_ns; /* CLOCK_MONOTONIC */
	__u32 window_events;   /* events let through in the window */
	__u32 pad;
	struct nf_event_counts suppressed;
};
#define nf_event_limit_index(pod_id, direction) ((pod_id) * NF_DIRECTION_COUNT + (direction))
enum nf_event_limit_entries { /* an enum, so that Swift sees the values */
	NF_NODE_EVENT_LIMIT = NF_MAX_PODS * NF_DIRECTION_COUNT,
	NF_EVENT_LIMIT_ENTRIES = NF_NODE_EVENT_LIMIT + 1,
};

/* counters (per CPU array): index nf_counter_index(pod_id, direction, verdict). */
#define nf_counter_index(pod_id, direction, verdict) \
	(((pod_id) * NF_DIRECTION_COUNT + (direction)) * 2 + (verdict))
#define NF_COUNTER_ENTRIES (NF_MAX_PODS * NF_DIRECTION_COUNT * 2)

/* An event (in event_rings): one decision that did not take the conntrack fast path. */
struct nf_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u32 ifindex;
	__u32 pod_id;
	__u32 rule_id;  /* 0 when no rule decided (default, conntrack, parse) */
	__u32 length;   /* skb->len */
	__u32 revision; /* the pod's policy revision at the decision */
	__u8 saddr[NF_ADDRESS_BYTES];
	__u8 daddr[NF_ADDRESS_BYTES];
	__u16 sport; /* host order */
	__u16 dport;
	__u8 direction; /* enum nf_direction, pod's view */
	__u8 family;
	__u8 protocol;
	__u8 verdict;
	__u8 tier;
	__u8 reason; /* enum nf_reason */
	__u16 captured; /* bytes of the packet (from its Ethernet header) right after the record */
	__u8 pad[8];
};

/* Bytes an event with CAPTURED bytes of its packet takes in a ring: records stay 8-byte aligned. */
static inline __u32 nf_event_record_bytes(__u32 captured)
{
	return (sizeof(struct nf_event) + captured + 7) & ~7u;
}

/* Room after a ring's data for the longest record, which never wraps: one that starts near
 * the end goes on into it, and the next starts at its position modulo the ring. */
#define NF_EVENT_RING_OVERFLOW_BYTES 640

/* event_rings (array, BPF_F_MMAPABLE, one entry per possible CPU, indexed by CPU): where the
 * datapath writes its events, each CPU into its own ring. tc programs do not nest on a CPU, so
 * each ring has one writer and needs no lock: the writer stores a record at `head` (a byte
 * position, modulo NF_EVENT_CPU_RING_BYTES), then publishes it by storing the new `head`; the
 * reader (it maps every ring) reads up to `head` and gives the space back by storing `tail`.
 * A record is a struct nf_event and its `captured` bytes, nf_event_record_bytes long. When a
 * ring has no room, the event is counted as NF_STAT_EVENTS_LOST. The record that fills a quarter
 * of a ring wakes a sleeping reader through event_doorbell (a ring buffer of wakeups only): a
 * wakeup is an interrupt, so none is sent while the reader is awake, nor after the end of its
 * sleep (a reader killed asleep leaves no doorbell ringing). */
struct nf_event_ring {
	__u64 head; /* bytes written by this CPU's programs */
	__u8 pad0[56];
	__u64 tail;           /* bytes the reader gave back, on a line of its own */
	__u64 reader_sleeps_until; /* CLOCK_MONOTONIC ns: until then a quarter rings the doorbell (0: awake) */
	__u8 pad1[48];
	__u8 data[NF_EVENT_CPU_RING_BYTES + NF_EVENT_RING_OVERFLOW_BYTES];
};

/* ---- Loader state (bpf/loader_state.bpf.c): kept in bpffs so any later
 * process, or a restarted node agent, sees what the loader did ---- */

#define NF_POD_NAMESPACE_BYTES 64
#define NF_POD_NAME_BYTES 256
#define NF_INTERFACE_BYTES 16
#define NF_NETNS_NAME_BYTES 64
/* Applied objects are stored (PolicyObjectCodec) in chunks of this many bytes. */
#define NF_OBJECT_CHUNK_BYTES 4088
#define NF_MAX_OBJECTS 65536
#define NF_MAX_OBJECT_CHUNKS (NF_MAX_OBJECTS * 4)

/* root_marker (array, one entry): pinned first by init, so a folder is known as
 * a netfence pin root and reset removes only the pins netfence's layout names. */
#define NF_ROOT_MAGIC 0x65636e656674656eULL /* "netfence", little-endian */
/* Bumped when a layout changes that map sizes cannot show (the tries inside
 * policies): an empty pinned policies map of another version is replaced. */
#define NF_ABI_VERSION 3
/* How pods' programs sit on their host veth's hooks (chosen by init, kept by later inits). */
enum nf_attachment {
	NF_ATTACH_TC = 0,  /* a cls_bpf filter on clsact (what `tc filter show` lists) */
	NF_ATTACH_TCX = 1, /* a tcx link pinned under ROOT/links (kernel 6.6 on) */
	NF_ATTACH_TC_THEN_TCX = 2, /* a filter first; `loader serve` moves a pod that stayed onto tcx links */
};

struct nf_root_marker {
	__u64 magic;       /* NF_ROOT_MAGIC */
	__u64 created_ns;  /* CLOCK_REALTIME of the first init */
	__u32 abi_version; /* NF_ABI_VERSION of the last init */
	__u32 attachment;  /* enum nf_attachment */
};

/* pending_change (array, one entry): written before a change's first write and
 * cleared after its last, so the next writer finds a change a kill interrupted
 * and rolls forward to what is stored. */
enum nf_loader_operation {
	NF_OPERATION_NONE = 0,
	NF_OPERATION_ATTACH = 1,
	NF_OPERATION_DETACH = 2,
	NF_OPERATION_APPLY = 3,
	NF_OPERATION_DELETE = 4,
	NF_OPERATION_RECONCILE = 5,
};
struct nf_pending_change {
	__u32 operation;  /* enum nf_loader_operation; NONE: nothing pending */
	__u32 pid;        /* of the process that began it */
	__u64 started_ns; /* CLOCK_REALTIME */
};

/* loader_counters (array, one entry): what only grows. Every policy swap of any
 * pod takes the next revision, so (pod id, revision) never repeats on a node,
 * not across detach and attach either; pod ids are handed out round-robin, so
 * a detached pod's id is the last to come back. Caches (the DNS proxy's) key on them. */
struct nf_loader_counters {
	__u32 last_revision;
	__u32 next_pod_id;   /* where the round-robin search for a free id starts */
};

/* dns_proxy_stats: what a DNS proxy counted since it started, by its first
 * listen address (16 bytes, IPv4 mapped), written with each heartbeat. */
enum nf_dns_stat {
	NF_DNS_QUERIES = 0,
	NF_DNS_FORWARDED = 1,
	NF_DNS_REFUSED = 2,
	NF_DNS_GRANTED = 3,       /* addresses written into grants */
	NF_DNS_FAILED = 4,        /* answered SERVFAIL */
	NF_DNS_RETRIED_TCP = 5,   /* truncated UDP answers asked again over TCP */
	NF_DNS_SPOOFED = 6,       /* upstream answers dropped: wrong source, ID or question */
	NF_DNS_CLIENT_LIMITED = 7,/* queries or connections over a client's or the proxy's bound */
	NF_DNS_IDLE_CLOSED = 8,   /* TCP client connections closed for idling */
	NF_DNS_STAT_COUNT = 9,
};
struct nf_dns_proxy_stats {
	__u64 counts[NF_DNS_STAT_COUNT]; /* by enum nf_dns_stat */
};

/* pod_registry: a pod attached on this node, by pod id. */
struct nf_pod_registration {
	__u32 ifindex;        /* of the host veth, in its namespace */
	__u8 defaults[NF_DIRECTION_COUNT]; /* 0 allow, 1 deny, by enum nf_direction */
	__u16 flags;          /* NF_REGISTRATION_* */
	char pod_namespace[NF_POD_NAMESPACE_BYTES];
	char pod_name[NF_POD_NAME_BYTES];
	char interface[NF_INTERFACE_BYTES];
	char netns[NF_NETNS_NAME_BYTES]; /* ip netns name; empty: the loader's namespace */
};

/* The pod is detached, but conntrack entries, domain grants and rule hits may
 * still name its id: the id is not handed out again until a sweep (one walk of
 * each table for many such pods at once) deleted them and then the registration,
 * so neither detach nor attach walks a table. */
#define NF_REGISTRATION_DETACHED 0x1

/* retired_objects (LRU): the policy an object index named before its version
 * was replaced or deleted, so rule ids that conntrack entries and events still
 * carry keep a name. */
#define NF_POLICY_REF_BYTES 320 /* namespace (63) / name (253), NUL-terminated */
#define NF_RETIRED_OBJECTS 4096
struct nf_retired_object {
	char policy_ref[NF_POLICY_REF_BYTES];
};

/* policy_manifests: an applied object version, by object index. Written after
 * its chunks, so a manifest always names a complete object. */
struct nf_object_manifest {
	__u32 length; /* bytes of the stored object */
	__u32 chunks;
	__u64 applied_ns; /* CLOCK_REALTIME at apply */
};

/* policy_chunks: the stored bytes of object versions. */
struct nf_object_chunk_key {
	__u32 object_index;
	__u32 chunk;
};

struct nf_object_chunk {
	__u32 length;
	__u8 data[NF_OBJECT_CHUNK_BYTES];
};

_Static_assert(sizeof(struct nf_demo_counter_key) == 8, "nf_demo_counter_key layout");
_Static_assert(__builtin_offsetof(struct nf_demo_counter_key, direction) == 4, "nf_demo_counter_key.direction");
_Static_assert(sizeof(struct nf_packet_counter) == 16, "nf_packet_counter layout");
_Static_assert(__builtin_offsetof(struct nf_packet_counter, bytes) == 8, "nf_packet_counter.bytes");
_Static_assert(sizeof(struct nf_pod) == 16, "nf_pod layout");
_Static_assert(__builtin_offsetof(struct nf_pod, state) == 9, "nf_pod.state");
_Static_assert(__builtin_offsetof(struct nf_pod, trie) == 12, "nf_pod.trie");
_Static_assert(sizeof(struct nf_policy_digest) == 36, "nf_policy_digest layout");
_Static_assert(NF_POLICY_ENTRIES <= NF_NO_TRIE, "a trie index fits a record's __u16");
_Static_assert(sizeof(struct nf_lpm_key) == 24, "nf_lpm_key layout");
_Static_assert(__builtin_offsetof(struct nf_lpm_key, address) == 5, "nf_lpm_key.address");
_Static_assert(sizeof(struct nf_port_rule) == 16, "nf_port_rule layout");
_Static_assert(__builtin_offsetof(struct nf_port_rule, flags) == 13, "nf_port_rule.flags");
_Static_assert(sizeof(struct nf_hit_key) == 12, "nf_hit_key layout");
_Static_assert(sizeof(struct nf_hit_value) == 24, "nf_hit_value layout");
_Static_assert(__builtin_offsetof(struct nf_port_rule, protocol) == 10, "nf_port_rule.protocol");
_Static_assert(sizeof(struct nf_rule_set) == 8 + 16 * NF_MAX_RULES_PER_PREFIX, "nf_rule_set layout");
_Static_assert(sizeof(struct nf_conntrack_key) == 44, "nf_conntrack_key layout");
_Static_assert(__builtin_offsetof(struct nf_conntrack_key, port_low) == 40, "nf_conntrack_key.port_low");
_Static_assert(__builtin_offsetof(struct nf_conntrack_value, pod_id) == 16, "nf_conntrack_value.pod_id");
_Static_assert(__builtin_offsetof(struct nf_conntrack_value, flags) == 22, "nf_conntrack_value.flags");
_Static_assert(sizeof(struct nf_conntrack_value) == 24, "nf_conntrack_value layout");
_Static_assert(sizeof(struct nf_fragment_key) == 44, "nf_fragment_key layout");
_Static_assert(sizeof(struct nf_fragment_value) == 12, "nf_fragment_value layout");
_Static_assert(sizeof(struct nf_settings) == 16, "nf_settings layout");
_Static_assert(sizeof(struct nf_pod_event_level) == 4, "nf_pod_event_level layout");
_Static_assert(sizeof(struct nf_event_limit) == 40, "nf_event_limit layout");
_Static_assert(sizeof(struct nf_event_counts) == 24, "nf_event_counts layout");
_Static_assert(__builtin_offsetof(struct nf_event, captured) == 70, "nf_event.captured");
_Static_assert(sizeof(struct nf_domain_rule_key) == 16, "nf_domain_rule_key layout");
_Static_assert(sizeof(struct nf_domain_grant_key) == 20, "nf_domain_grant_key layout");
_Static_assert(sizeof(struct nf_domain_grant) == 8 + 16 * NF_MAX_PATTERNS_PER_GRANT, "nf_domain_grant layout");
_Static_assert(__builtin_offsetof(struct nf_domain_grant, patterns) == 8, "nf_domain_grant.patterns");
_Static_assert(sizeof(struct nf_dns_proxy) == 16, "nf_dns_proxy layout");
_Static_assert(sizeof(struct nf_event) == 80, "nf_event layout");
_Static_assert(__builtin_offsetof(struct nf_event, saddr) == 28, "nf_event.saddr");
_Static_assert(__builtin_offsetof(struct nf_event, direction) == 64, "nf_event.direction");
_Static_assert(sizeof(struct nf_event) + NF_MAX_SNAPLEN <= NF_EVENT_RING_OVERFLOW_BYTES, "the longest event fits the overflow");
_Static_assert(__builtin_offsetof(struct nf_event_ring, tail) == 64, "nf_event_ring.tail");
_Static_assert(__builtin_offsetof(struct nf_event_ring, data) == 128, "nf_event_ring.data");
_Static_assert((NF_EVENT_CPU_RING_BYTES & (NF_EVENT_CPU_RING_BYTES - 1)) == 0, "a ring's bytes are a power of two");
_Static_assert(sizeof(struct nf_pod_registration) == 408, "nf_pod_registration layout");
_Static_assert(__builtin_offsetof(struct nf_pod_registration, pod_name) == 72, "nf_pod_registration.pod_name");
_Static_assert(sizeof(struct nf_root_marker) == 24, "nf_root_marker layout");
_Static_assert(sizeof(struct nf_pending_change) == 16, "nf_pending_change layout");
_Static_assert(sizeof(struct nf_loader_counters) == 8, "nf_loader_counters layout");
_Static_assert(sizeof(struct nf_dns_proxy_stats) == 8 * NF_DNS_STAT_COUNT, "nf_dns_proxy_stats layout");
_Static_assert(sizeof(struct nf_retired_object) == NF_POLICY_REF_BYTES, "nf_retired_object layout");
_Static_assert(sizeof(struct nf_object_manifest) == 16, "nf_object_manifest layout");
_Static_assert(sizeof(struct nf_object_chunk) == 4092, "nf_object_chunk layout");

#endif /* NETFENCE_ABI_H */
