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

/* Creates the clsact qdisc when absent and attaches PROG_FD as a direct-action
 * filter, replacing one with the same handle and priority atomically. Writes
 * the interface index, handle and priority the kernel used. */
int nf_tc_attach(const struct nf_tc_target *target, int prog_fd, __u32 *ifindex,
		 __u32 *handle, __u32 *priority);

/* Removes the filter with the target's handle and priority. */
int nf_tc_detach(const struct nf_tc_target *target);

/* The index of interface IFNAME inside NETNS_FD (-1: this namespace). */
int nf_ifindex_in_netns(int netns_fd, const char *ifname);

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

/* Records drained from a BPF ring buffer, each as a __u32 length then its
 * bytes. With CAPACITY at least the ring's size everything the ring holds
 * fits; a record that does not is counted in DROPPED (libbpf has already
 * consumed it). */
struct nf_ring_records {
	__u8 *data;
	__u32 capacity;
	__u32 used;
	__u32 count;
	__u32 dropped;
};

/* A libbpf ring buffer consumer on MAP_FD that drains into RECORDS, or NULL
 * with errno set. */
struct ring_buffer *nf_ring_open(int map_fd, struct nf_ring_records *records);

/* Moves every ready record into the consumer's RECORDS; returns how many
 * were read from the ring, or -errno. */
int nf_ring_drain(struct ring_buffer *ring);

/* Waits up to TIMEOUT_MS for records (epoll on the ring), then moves every
 * ready one into RECORDS; returns how many, 0 when the wait timed out or a
 * signal ended it, or -errno. */
int nf_ring_wait(struct ring_buffer *ring, int timeout_ms);

/* libbpf prints warnings (verifier logs among them) to stderr by default;
 * this keeps the last one instead, so a failed load becomes one error line
 * that names the cause. */
void nf_libbpf_capture_logs(void);

/* The last libbpf warning captured since the previous call, or "" if none. */
const char *nf_libbpf_last_warning(void);

#endif /* NETFENCE_SHIM_H */
