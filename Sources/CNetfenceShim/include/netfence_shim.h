/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The thin C layer under BPFKit: only what Swift cannot do safely. libbpf's
 * option structs are built here with LIBBPF_OPTS (Swift leaves tail padding
 * dirty, which libbpf rejects), namespace switches happen on a private thread
 * (setns on a Swift thread would move unrelated work), and glibc calls that
 * Swift's Glibc module lacks (statfs) are wrapped. Every function returns 0 or
 * a non-negative result on success and -errno on failure.
 */
#ifndef NETFENCE_SHIM_H
#define NETFENCE_SHIM_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <stddef.h>

#include "../../../bpf/netfence_abi.h"

struct bpf_program;

/* The bpffs superblock magic (BPF_FS_MAGIC in <linux/magic.h>). */
#define NF_BPF_FS_MAGIC 0xcafe4a11UL

/* Which clsact hook of an interface. */
enum nf_tc_hook {
	NF_TC_HOOK_INGRESS = 0,
	NF_TC_HOOK_EGRESS = 1,
};

/* Where a tc program goes: an interface by name inside a network namespace. */
struct nf_tc_target {
	int netns_fd;       /* an open /run/netns/NAME or /proc/PID/ns/net; -1: this process's */
	const char *ifname; /* resolved inside that namespace */
	enum nf_tc_hook hook;
	__u32 handle;       /* filter handle; 0 lets the kernel choose */
	__u32 priority;     /* filter priority; 0 lets the kernel choose */
};

/* Loads the loaded program PROGRAM's final instructions again as a program
 * with no kernel name, as the AWS agent's SDK loads its programs (its maps
 * already relocated into them). Returns the new descriptor or -errno. */
int nf_prog_load_nameless(const struct bpf_program *program);

/* The statfs f_type of PATH, to tell whether it lies on bpffs. */
int nf_statfs_type(const char *path, long *fs_type);

/* The CPUs thread TID (0: the caller) may run on, as a bit mask of SIZE bytes
 * (sched_getaffinity / sched_setaffinity, which need _GNU_SOURCE). */
int nf_get_affinity(int tid, void *mask, size_t size);
int nf_set_affinity(int tid, const void *mask, size_t size);

/* Creates the clsact qdisc when absent and attaches PROG_FD as a direct-action
 * filter, replacing one with the same handle and priority atomically. Writes
 * the interface index, handle and priority the kernel used. */
int nf_tc_attach(const struct nf_tc_target *target, int prog_fd, __u32 *ifindex,
		 __u32 *handle, __u32 *priority);

/* Removes the filter with the target's handle and priority. */
int nf_tc_detach(const struct nf_tc_target *target);

/* Attaches PROG_FD to the target's hook through tcx (a BPF link, kernel 6.6 on; the
 * target's handle and priority are unused). Returns the link's descriptor (closing its last
 * descriptor, when unpinned, detaches it) or -errno (EINVAL before 6.6); writes the ifindex. */
int nf_tcx_attach(const struct nf_tc_target *target, int prog_fd, __u32 *ifindex);

/* The ids of the programs tcx runs on both hooks of each of COUNT interfaces (IFINDEXES, inside
 * NETNS_FD), in one entry of the namespace: slot (i * 2 + hook) holds up to PER_SLOT ids at
 * IDS[slot * PER_SLOT] and how many in FOUND[slot] (0 where the kernel has no tcx). 0 or -errno. */
int nf_tcx_query(int netns_fd, const __u32 *ifindexes, __u32 count, __u32 *ids, __u32 per_slot, __u32 *found);

/* 1 when the kernel has tcx (asks what tcx runs on loopback: older kernels refuse the attach type). */
int nf_tcx_available(void);

/* Where the tcx link LINK_FD attaches its program: *IFINDEX (0 once the interface is gone) and
 * *HOOK. -EINVAL for a link of another kind; 0 or -errno. */
int nf_tcx_link_info(int link_fd, __u32 *ifindex, enum nf_tc_hook *hook);

/* The index of interface IFNAME inside NETNS_FD (-1: this namespace). */
int nf_ifindex_in_netns(int netns_fd, const char *ifname);

/* The driver of interface `ifname` in this process's namespace ("veth",
 * "bridge"), written into `driver` (NUL-terminated); 0 or -errno. */
int nf_interface_driver(const char *ifname, char *driver, size_t size);

/* A socket created inside the network namespace NETNS_FD (-1: this one). A
 * socket stays in the namespace it was created in, so netlink queries made
 * through it describe that namespace. */
int nf_socket_in_netns(int netns_fd, int domain, int type, int protocol);

/* Runs a program once or REPEAT times on DATA through BPF_PROG_TEST_RUN, on a
 * thread inside NETNS_FD (-1: this namespace). For tc programs CTX_IFINDEX
 * sets __sk_buff.ifindex (0: the kernel uses 1); the kernel resolves it, so it
 * must name an interface in that namespace. */
/* One run of a tc program on DATA with a context: IFINDEX, MARK and CB (5
 * words) in, CB as the program left it out (how explain reads a decision). */
int nf_prog_test_run_context(int netns_fd, int prog_fd, const void *data, __u32 size, __u32 ifindex, __u32 mark,
			     __u32 cb[5], __u32 *retval);

int nf_prog_test_run(int netns_fd, int prog_fd, const void *data, __u32 size, __u32 repeat,
		     __u32 ctx_ifindex, __u32 *retval, __u32 *duration_ns);

/* The COUNT __u64 values of MAP_FD, a BPF_F_MMAPABLE array, mapped into this process:
 * read and bumped with no call. NULL with errno set. */
__u64 *nf_counters_map(int map_fd, __u32 count);
void nf_counters_unmap(__u64 *counters, __u32 count);
/* COUNTERS[INDEX]; what was written before the bump that made it is seen after it. */
__u64 nf_counter_read(const __u64 *counters, __u32 index);
/* Adds one to COUNTERS[INDEX] once every write before it is seen; returns the value it had. */
__u64 nf_counter_bump(__u64 *counters, __u32 index);

/* The one consumer of a BPF ring buffer map, reading records in place (the
 * kernel maps the data area twice, so a record is contiguous even where it
 * wraps) and moving the consumer position only when told: a reader that
 * dies before committing leaves its records for the next one. The position
 * lives in the map, so it carries over from one reader process to the next. */
struct nf_ring;

struct nf_ring_record {
	const void *data; /* valid until the batch is committed */
	__u32 length;
	__u64 end; /* the position after it: where a reader that made it durable resumes */
};

/* A consumer of MAP_FD, a ring of SIZE data bytes; NULL with errno set. */
struct nf_ring *nf_ring_open(int map_fd, __u32 size);
void nf_ring_close(struct nf_ring *ring);

/* Up to MAX records ready after the last one handed out (committed or not),
 * oldest first, into RECORDS; stops at one still being written. Returns how
 * many. Discarded records are passed over. */
int nf_ring_peek(struct nf_ring *ring, struct nf_ring_record *records, int max);

/* The position after the last record handed out, and the committed one. */
__u64 nf_ring_pending_position(const struct nf_ring *ring);
__u64 nf_ring_consumer_position(const struct nf_ring *ring);
/* What the producer has written up to (records beyond it are not there yet). */
__u64 nf_ring_producer_position(const struct nf_ring *ring);

/* Gives back every record handed out: the producer may reuse their space. */
void nf_ring_commit(struct nf_ring *ring);

/* Moves the consumer to POSITION (between the consumer's and the producer's):
 * the records before it count as read. Returns 0, or -EINVAL outside that range. */
int nf_ring_skip_to(struct nf_ring *ring, __u64 position);

/* Waits up to TIMEOUT_MS for the producer to signal data (epoll on the map);
 * returns 0 (data, a timeout or a signal: peek to know), or -errno. */
int nf_ring_wait(struct nf_ring *ring, int timeout_ms);

/* A reader of netfence's event rings (event_rings: struct nf_event_ring, one per CPU),
 * merged across CPUs by their timestamps. The consumer reads records in place and gives
 * space back only when told, as nf_ring does; each CPU's position lives in its ring. A
 * watcher reads beside it from its own positions: it copies each record out and keeps
 * it only if no writer can have reused its bytes, and never sleeps on the doorbell. */
struct nf_event_rings;

struct nf_event_record {
	const struct nf_event *event; /* and its captured bytes after it; valid until committed (a watcher's: until its next peek) */
	__u32 length;
	__u32 cpu;
	__u64 end; /* the CPU's position after it */
};

/* A consumer (WATCHING 0) of RINGS_FD (CPUS rings) woken through DOORBELL_FD, or a watcher;
 * NULL with errno set. */
struct nf_event_rings *nf_event_rings_open(int rings_fd, __u32 cpus, int doorbell_fd, int watching);
void nf_event_rings_close(struct nf_event_rings *rings);
/* A watcher's bytes of records it fell a ring behind on and skipped (the consumer had given them back). */
__u64 nf_event_rings_skipped(const struct nf_event_rings *rings);

/* Records a watcher copies out per peek at most (its copies hold this many of the longest). */
#define NF_EVENT_WATCH_BATCH 256

/* Up to MAX records ready after the last ones handed out, the oldest of every CPU's
 * first, into RECORDS (a watcher: up to NF_EVENT_WATCH_BATCH). Returns how many. */
int nf_event_rings_peek(struct nf_event_rings *rings, struct nf_event_record *records, int max);

/* A CPU's position after the last record handed out, its committed one, and its producer's. */
__u64 nf_event_rings_pending(const struct nf_event_rings *rings, __u32 cpu);
__u64 nf_event_rings_committed(const struct nf_event_rings *rings, __u32 cpu);
__u64 nf_event_rings_head(const struct nf_event_rings *rings, __u32 cpu);
/* Until when (CLOCK_MONOTONIC ns) a reader sleeps on CPU's ring (0: none). */
__u64 nf_event_rings_sleeps_until(const struct nf_event_rings *rings, __u32 cpu);

/* Gives back every record handed out. */
void nf_event_rings_commit(struct nf_event_rings *rings);

/* Moves CPU's consumer to POSITION (between its committed position and its producer's).
 * Returns 0, or -EINVAL outside that range. */
int nf_event_rings_skip_to(struct nf_event_rings *rings, __u32 cpu, __u64 position);

/* Waits up to TIMEOUT_MS for a ring to fill a quarter (the doorbell; a watcher: for any record,
 * looking every 50 ms); returns 0 (ready, a timeout or a signal: peek to know), or -errno. */
int nf_event_rings_wait(struct nf_event_rings *rings, int timeout_ms);

/* libbpf prints warnings (verifier logs among them) to stderr by default;
 * this keeps the last one instead, so a failed load becomes one error line
 * that names the cause. */
void nf_libbpf_capture_logs(void);

/* The last libbpf warning captured since the previous call, or "" if none. */
const char *nf_libbpf_last_warning(void);

#endif /* NETFENCE_SHIM_H */
