// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#define _GNU_SOURCE
#include "netfence_shim.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

int nf_prog_load_nameless(const struct bpf_program *program)
{
	const struct bpf_insn *insns = bpf_program__insns(program);
	size_t count = bpf_program__insn_cnt(program);

	if (!insns || !count)
		return -EINVAL;
	int fd = bpf_prog_load(bpf_program__type(program), NULL, "Dual BSD/GPL", insns, count, NULL);

	return fd < 0 ? -errno : fd;
}

int nf_statfs_type(const char *path, long *fs_type)
{
	struct statfs st;

	if (statfs(path, &st) != 0)
		return -errno;
	*fs_type = (long)st.f_type;
	return 0;
}

int nf_get_affinity(int tid, void *mask, size_t size)
{
	return sched_getaffinity(tid, size, (cpu_set_t *)mask) ? -errno : 0;
}

int nf_set_affinity(int tid, const void *mask, size_t size)
{
	return sched_setaffinity(tid, size, (const cpu_set_t *)mask) ? -errno : 0;
}

/* Runs FN(ARG) on a new thread that first enters NETNS_FD, so the caller's
 * threads never change namespace. */
struct netns_call {
	int netns_fd;
	int (*fn)(void *);
	void *arg;
	int result;
};

static void *netns_thread(void *opaque)
{
	struct netns_call *call = opaque;

	if (setns(call->netns_fd, CLONE_NEWNET) != 0)
		call->result = -errno;
	else
		call->result = call->fn(call->arg);
	return NULL;
}

static int run_in_netns(int netns_fd, int (*fn)(void *), void *arg)
{
	struct netns_call call = { .netns_fd = netns_fd, .fn = fn, .arg = arg };
	pthread_t thread;
	int err;

	if (netns_fd < 0)
		return fn(arg);
	err = pthread_create(&thread, NULL, netns_thread, &call);
	if (err)
		return -err;
	pthread_join(thread, NULL);
	return call.result;
}

static int to_libbpf_hook(enum nf_tc_hook hook)
{
	return hook == NF_TC_HOOK_INGRESS ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}

struct tc_call {
	const struct nf_tc_target *target;
	int prog_fd;
	__u32 ifindex, handle, priority;
};

static int tc_attach_here(void *opaque)
{
	struct tc_call *call = opaque;
	unsigned int ifindex = if_nametoindex(call->target->ifname);
	int err;

	if (!ifindex)
		return -errno;
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = to_libbpf_hook(call->target->hook));
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = call->target->handle,
		    .priority = call->target->priority, .prog_fd = call->prog_fd,
		    .flags = BPF_TC_F_REPLACE);

	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return err;
	err = bpf_tc_attach(&hook, &opts);
	if (err)
		return err;
	call->ifindex = ifindex;
	call->handle = opts.handle;
	call->priority = opts.priority;
	return 0;
}

int nf_tc_attach(const struct nf_tc_target *target, int prog_fd, __u32 *ifindex,
		 __u32 *handle, __u32 *priority)
{
	struct tc_call call = { .target = target, .prog_fd = prog_fd };
	int err = run_in_netns(target->netns_fd, tc_attach_here, &call);

	if (err)
		return err;
	*ifindex = call.ifindex;
	*handle = call.handle;
	*priority = call.priority;
	return 0;
}

static int tc_detach_here(void *opaque)
{
	struct tc_call *call = opaque;
	unsigned int ifindex = if_nametoindex(call->target->ifname);

	if (!ifindex)
		return -errno;
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = to_libbpf_hook(call->target->hook));
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = call->target->handle,
		    .priority = call->target->priority);
	return bpf_tc_detach(&hook, &opts);
}

int nf_tc_detach(const struct nf_tc_target *target)
{
	struct tc_call call = { .target = target };

	return run_in_netns(target->netns_fd, tc_detach_here, &call);
}

/* tcx's attach types (kernel 6.6), which the 6.1 UAPI headers lack. */
enum { NF_BPF_TCX_INGRESS = 46, NF_BPF_TCX_EGRESS = 47 };

static __u32 tcx_attach_type(enum nf_tc_hook hook)
{
	return hook == NF_TC_HOOK_INGRESS ? NF_BPF_TCX_INGRESS : NF_BPF_TCX_EGRESS;
}

struct tcx_call {
	const struct nf_tc_target *target;
	int prog_fd;
	__u32 ifindex;
};

static int tcx_attach_here(void *opaque)
{
	struct tcx_call *call = opaque;
	unsigned int ifindex = if_nametoindex(call->target->ifname);
	union bpf_attr attr;
	int fd;

	if (!ifindex)
		return -errno;
	memset(&attr, 0, sizeof(attr));
	attr.link_create.prog_fd = call->prog_fd;
	attr.link_create.target_ifindex = ifindex;
	attr.link_create.attach_type = tcx_attach_type(call->target->hook);
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	if (fd < 0)
		return -errno;
	call->ifindex = ifindex;
	return fd;
}

int nf_tcx_attach(const struct nf_tc_target *target, int prog_fd, __u32 *ifindex)
{
	struct tcx_call call = { .target = target, .prog_fd = prog_fd };
	int fd = run_in_netns(target->netns_fd, tcx_attach_here, &call);

	if (fd >= 0)
		*ifindex = call.ifindex;
	return fd;
}

struct tcx_query_call {
	const __u32 *ifindexes;
	__u32 count, per_slot;
	__u32 *ids, *found;
};

static int tcx_query_here(void *opaque)
{
	struct tcx_query_call *call = opaque;
	union bpf_attr attr;

	for (__u32 slot = 0; slot < call->count * 2; slot++) {
		memset(&attr, 0, sizeof(attr));
		attr.query.target_fd = call->ifindexes[slot / 2]; /* tcx reads it as target_ifindex */
		attr.query.attach_type = tcx_attach_type(slot % 2 ? NF_TC_HOOK_EGRESS : NF_TC_HOOK_INGRESS);
		attr.query.prog_ids = (__u64)(unsigned long)(call->ids + (size_t)slot * call->per_slot);
		attr.query.prog_cnt = call->per_slot;
		if (syscall(__NR_bpf, BPF_PROG_QUERY, &attr, sizeof(attr)) == 0 || errno == ENOSPC)
			call->found[slot] = attr.query.prog_cnt < call->per_slot ? attr.query.prog_cnt : call->per_slot;
		else
			call->found[slot] = 0; /* no tcx in this kernel, or the interface went */
	}
	return 0;
}

int nf_tcx_query(int netns_fd, const __u32 *ifindexes, __u32 count, __u32 *ids, __u32 per_slot, __u32 *found)
{
	struct tcx_query_call call = { .ifindexes = ifindexes, .count = count, .per_slot = per_slot, .ids = ids, .found = found };

	return run_in_netns(netns_fd, tcx_query_here, &call);
}

int nf_tcx_available(void)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.query.target_fd = 1; /* loopback's ifindex in every namespace */
	attr.query.attach_type = NF_BPF_TCX_INGRESS;
	return syscall(__NR_bpf, BPF_PROG_QUERY, &attr, sizeof(attr)) == 0 ? 1 : 0;
}

/* BPF_LINK_TYPE_TCX (kernel 6.6), which the 6.1 UAPI headers lack. */
enum { NF_BPF_LINK_TYPE_TCX = 11 };

int nf_tcx_link_info(int link_fd, __u32 *ifindex, enum nf_tc_hook *hook)
{
	struct bpf_link_info info;
	__u32 length = sizeof(info);
	/* tcx's member of the union (ifindex, attach_type) is two __u32 where every member starts */
	const __u32 *tcx = (const __u32 *)((const char *)&info + offsetof(struct bpf_link_info, raw_tracepoint));

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(link_fd, &info, &length))
		return -errno;
	if (info.type != NF_BPF_LINK_TYPE_TCX || (tcx[1] != NF_BPF_TCX_INGRESS && tcx[1] != NF_BPF_TCX_EGRESS))
		return -EINVAL;
	*ifindex = tcx[0]; /* 0: its interface is gone */
	*hook = tcx[1] == NF_BPF_TCX_INGRESS ? NF_TC_HOOK_INGRESS : NF_TC_HOOK_EGRESS;
	return 0;
}

static int ifindex_here(void *opaque)
{
	unsigned int ifindex = if_nametoindex(opaque);

	return ifindex ? (int)ifindex : -errno;
}

int nf_ifindex_in_netns(int netns_fd, const char *ifname)
{
	return run_in_netns(netns_fd, ifindex_here, (void *)ifname);
}

int nf_interface_driver(const char *ifname, char *driver, size_t size)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq request = { 0 };
	int fd, err = 0;

	if (strlen(ifname) >= IFNAMSIZ || size == 0)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	strcpy(request.ifr_name, ifname);
	request.ifr_data = (void *)&info;
	if (ioctl(fd, SIOCETHTOOL, &request) < 0)
		err = -errno;
	close(fd);
	if (err)
		return err;
	snprintf(driver, size, "%.*s", (int)sizeof(info.driver), info.driver);
	return 0;
}

struct socket_call {
	int domain, type, protocol;
};

static int socket_here(void *opaque)
{
	struct socket_call *call = opaque;
	int fd = socket(call->domain, call->type | SOCK_CLOEXEC, call->protocol);

	return fd < 0 ? -errno : fd;
}

int nf_socket_in_netns(int netns_fd, int domain, int type, int protocol)
{
	struct socket_call call = { .domain = domain, .type = type, .protocol = protocol };

	return run_in_netns(netns_fd, socket_here, &call);
}

struct test_run_call {
	int prog_fd;
	struct bpf_test_run_opts *opts;
};

static int test_run_here(void *opaque)
{
	struct test_run_call *call = opaque;
	int err = bpf_prog_test_run_opts(call->prog_fd, call->opts);

	return err < 0 ? err : 0;
}

int nf_prog_test_run_context(int netns_fd, int prog_fd, const void *data, __u32 size, __u32 ifindex, __u32 mark,
			     __u32 cb[5], __u32 *retval)
{
	struct __sk_buff ctx = { .ifindex = ifindex, .mark = mark }, out = {};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = size, .repeat = 1,
		    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .ctx_out = &out, .ctx_size_out = sizeof(out));
	struct test_run_call call = { .prog_fd = prog_fd, .opts = &opts };

	memcpy(ctx.cb, cb, sizeof(ctx.cb));
	int err = run_in_netns(netns_fd, test_run_here, &call);

	if (err)
		return err;
	memcpy(cb, out.cb, sizeof(out.cb));
	*retval = opts.retval;
	return 0;
}

int nf_prog_test_run(int netns_fd, int prog_fd, const void *data, __u32 size, __u32 repeat,
		     __u32 ctx_ifindex, __u32 *retval, __u32 *duration_ns)
{
	struct __sk_buff ctx = { .ifindex = ctx_ifindex };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = size,
		    .repeat = repeat, .ctx_in = ctx_ifindex ? &ctx : NULL,
		    .ctx_size_in = ctx_ifindex ? sizeof(ctx) : 0);
	struct test_run_call call = { .prog_fd = prog_fd, .opts = &opts };
	int err = run_in_netns(netns_fd, test_run_here, &call);

	if (err)
		return err;
	*retval = opts.retval;
	*duration_ns = opts.duration;
	return 0;
}

static size_t counters_bytes(__u32 count)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return ((size_t)count * sizeof(__u64) + page - 1) / page * page;
}

__u64 *nf_counters_map(int map_fd, __u32 count)
{
	void *counters = mmap(NULL, counters_bytes(count), PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);

	return counters == MAP_FAILED ? NULL : counters;
}

void nf_counters_unmap(__u64 *counters, __u32 count)
{
	if (counters)
		munmap(counters, counters_bytes(count));
}

__u64 nf_counter_read(const __u64 *counters, __u32 index)
{
	return __atomic_load_n(&counters[index], __ATOMIC_ACQUIRE);
}

__u64 nf_counter_bump(__u64 *counters, __u32 index)
{
	return __atomic_fetch_add(&counters[index], 1, __ATOMIC_ACQ_REL);
}

struct nf_ring {
	int epoll_fd;
	__u64 mask;
	size_t page_size;
	__u64 *consumer_pos; /* the first page, ours to write */
	void *producer_page; /* the producer position, then the data twice */
	__u64 data_size;
	__u64 pending;   /* after the last record handed out */
	__u64 committed; /* what this reader last gave back */
};

struct nf_ring *nf_ring_open(int map_fd, __u32 size)
{
	struct nf_ring *ring = calloc(1, sizeof(*ring));
	struct epoll_event event = { .events = EPOLLIN };
	int err;

	if (!ring)
		return NULL;
	if (!size || (size & (size - 1))) {
		free(ring);
		errno = EINVAL;
		return NULL;
	}
	ring->page_size = (size_t)sysconf(_SC_PAGESIZE);
	ring->mask = size - 1;
	ring->data_size = size;
	ring->epoll_fd = -1;
	ring->consumer_pos = mmap(NULL, ring->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (ring->consumer_pos == MAP_FAILED)
		goto fail;
	ring->producer_page = mmap(NULL, ring->page_size + 2 * (size_t)size, PROT_READ, MAP_SHARED, map_fd, ring->page_size);
	if (ring->producer_page == MAP_FAILED)
		goto fail;
	ring->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (ring->epoll_fd < 0 || epoll_ctl(ring->epoll_fd, EPOLL_CTL_ADD, map_fd, &event) < 0)
		goto fail;
	ring->pending = ring->committed = __atomic_load_n(ring->consumer_pos, __ATOMIC_ACQUIRE);
	return ring;
fail:
	err = errno;
	nf_ring_close(ring);
	errno = err;
	return NULL;
}

void nf_ring_close(struct nf_ring *ring)
{
	if (!ring)
		return;
	if (ring->consumer_pos && ring->consumer_pos != MAP_FAILED)
		munmap(ring->consumer_pos, ring->page_size);
	if (ring->producer_page && ring->producer_page != MAP_FAILED)
		munmap(ring->producer_page, ring->page_size + 2 * ring->data_size);
	if (ring->epoll_fd >= 0)
		close(ring->epoll_fd);
	free(ring);
}

__u64 nf_ring_producer_position(const struct nf_ring *ring)
{
	return __atomic_load_n((__u64 *)ring->producer_page, __ATOMIC_ACQUIRE);
}

int nf_ring_peek(struct nf_ring *ring, struct nf_ring_record *records, int max)
{
	const __u8 *data = (const __u8 *)ring->producer_page + ring->page_size;
	__u64 producer = nf_ring_producer_position(ring);
	int count = 0;

	/* With nothing handed out, start where the ring's consumer is now: another
	 * reader (a process, or a second consumer here) may have moved it. */
	if (ring->pending == ring->committed)
		ring->pending = ring->committed = nf_ring_consumer_position(ring);

	while (count < max && ring->pending < producer) {
		const __u8 *header = data + (ring->pending & ring->mask);
		__u32 length = __atomic_load_n((const __u32 *)header, __ATOMIC_ACQUIRE);

		if (length & BPF_RINGBUF_BUSY_BIT)
			break;
		__u32 size = length & ~(__u32)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);

		ring->pending += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7ULL;
		if (!(length & BPF_RINGBUF_DISCARD_BIT)) {
			records[count].data = header + BPF_RINGBUF_HDR_SZ;
			records[count].length = size;
			records[count].end = ring->pending;
			count++;
		}
	}
	return count;
}

__u64 nf_ring_pending_position(const struct nf_ring *ring)
{
	return ring->pending;
}

__u64 nf_ring_consumer_position(const struct nf_ring *ring)
{
	return __atomic_load_n(ring->consumer_pos, __ATOMIC_ACQUIRE);
}

void nf_ring_commit(struct nf_ring *ring)
{
	__u64 current = nf_ring_consumer_position(ring);

	/* Never back: another reader may have given back more meanwhile. */
	while (current < ring->pending &&
	       !__atomic_compare_exchange_n(ring->consumer_pos, &current, ring->pending, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
		;
	ring->committed = ring->pending;
}

int nf_ring_skip_to(struct nf_ring *ring, __u64 position)
{
	if (position < nf_ring_consumer_position(ring) || position > nf_ring_producer_position(ring))
		return -EINVAL;
	ring->pending = position;
	nf_ring_commit(ring);
	return 0;
}

int nf_ring_wait(struct nf_ring *ring, int timeout_ms)
{
	struct epoll_event event;

	if (epoll_wait(ring->epoll_fd, &event, 1, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

struct nf_event_rings {
	__u8 *base;
	size_t mapped;
	__u32 cpus;
	struct nf_ring *doorbell;
	__u64 *pending;   /* per CPU: after the last record handed out */
	__u64 *committed; /* per CPU: what this reader last gave back */
	__u32 *ready;     /* scratch of peek: the CPUs with records */
	__u64 *heads;     /* scratch of peek: their producers' positions */
	/* A watcher reads beside the consumer, who may give records back under it: it copies each
	 * record out (copies, NF_EVENT_WATCH_BATCH of them) and keeps it only if its bytes cannot have been
	 * written again meanwhile; skipped counts the bytes of the records it fell behind on. */
	int watching;
	__u8 *copies;
	__u64 skipped;
};

/* How often a watcher looks for records when there were none. */
#define WATCH_POLL_MS 50
#define EVENT_RECORD_MAX_BYTES (sizeof(struct nf_event) + NF_MAX_SNAPLEN)

/* Bytes from one CPU's ring to the next in the array (the kernel rounds values to 8). */
#define EVENT_RING_STRIDE ((sizeof(struct nf_event_ring) + 7) & ~(size_t)7)

static struct nf_event_ring *event_ring(const struct nf_event_rings *rings, __u32 cpu)
{
	return (struct nf_event_ring *)(rings->base + (size_t)cpu * EVENT_RING_STRIDE);
}

struct nf_event_rings *nf_event_rings_open(int rings_fd, __u32 cpus, int doorbell_fd, int watching)
{
	struct nf_event_rings *rings = calloc(1, sizeof(*rings));
	int err;

	if (!rings)
		return NULL;
	rings->cpus = cpus;
	rings->watching = watching;
	if (watching && !(rings->copies = malloc(NF_EVENT_WATCH_BATCH * EVENT_RECORD_MAX_BYTES))) {
		free(rings);
		return NULL;
	}
	rings->mapped = (size_t)cpus * EVENT_RING_STRIDE;
	rings->base = MAP_FAILED;
	rings->pending = calloc(cpus ? cpus : 1, sizeof(__u64));
	rings->committed = calloc(cpus ? cpus : 1, sizeof(__u64));
	rings->ready = calloc(cpus ? cpus : 1, sizeof(__u32));
	rings->heads = calloc(cpus ? cpus : 1, sizeof(__u64));
	if (!cpus || !rings->pending || !rings->committed || !rings->ready || !rings->heads) {
		errno = cpus ? ENOMEM : EINVAL;
		goto fail;
	}
	rings->base = mmap(NULL, rings->mapped, PROT_READ | PROT_WRITE, MAP_SHARED, rings_fd, 0);
	if (rings->base == MAP_FAILED)
		goto fail;
	rings->doorbell = nf_ring_open(doorbell_fd, NF_EVENT_DOORBELL_BYTES);
	if (!rings->doorbell)
		goto fail;
	for (__u32 cpu = 0; cpu < cpus; cpu++)
		rings->pending[cpu] = rings->committed[cpu] = nf_event_rings_committed(rings, cpu);
	return rings;
fail:
	err = errno;
	nf_event_rings_close(rings);
	errno = err;
	return NULL;
}

void nf_event_rings_close(struct nf_event_rings *rings)
{
	if (!rings)
		return;
	if (rings->base != MAP_FAILED)
		munmap(rings->base, rings->mapped);
	nf_ring_close(rings->doorbell);
	free(rings->pending);
	free(rings->committed);
	free(rings->ready);
	free(rings->heads);
	free(rings->copies);
	free(rings);
}

__u64 nf_event_rings_skipped(const struct nf_event_rings *rings)
{
	return rings->skipped;
}

__u64 nf_event_rings_head(const struct nf_event_rings *rings, __u32 cpu)
{
	return __atomic_load_n(&event_ring(rings, cpu)->head, __ATOMIC_ACQUIRE);
}

__u64 nf_event_rings_committed(const struct nf_event_rings *rings, __u32 cpu)
{
	return __atomic_load_n(&event_ring(rings, cpu)->tail, __ATOMIC_ACQUIRE);
}

__u64 nf_event_rings_sleeps_until(const struct nf_event_rings *rings, __u32 cpu)
{
	return __atomic_load_n(&event_ring(rings, cpu)->reader_sleeps_until, __ATOMIC_RELAXED);
}

__u64 nf_event_rings_pending(const struct nf_event_rings *rings, __u32 cpu)
{
	return rings->pending[cpu];
}

/* The record at CPU's pending position, or NULL past HEAD or where the ring makes no sense. */
static const struct nf_event *event_at(const struct nf_event_rings *rings, __u32 cpu, __u64 head)
{
	__u64 position = rings->pending[cpu];

	if (position >= head || head - position > NF_EVENT_CPU_RING_BYTES)
		return NULL;
	const struct nf_event *event =
		(const struct nf_event *)&event_ring(rings, cpu)->data[position & (NF_EVENT_CPU_RING_BYTES - 1)];
	if (event->captured > NF_MAX_SNAPLEN || position + nf_event_record_bytes(event->captured) > head)
		return NULL;
	return event;
}

/* Whether a watcher's copy of the record at CPU's pending position is whole. A writer writes
 * again only bytes a consumer gave back: while the tail is not past the record, or the head is
 * still a ring (less the longest record, which may be half written) short of it, none were. */
static int copy_is_whole(const struct nf_event_rings *rings, __u32 cpu)
{
	__u64 position = rings->pending[cpu];

	__atomic_thread_fence(__ATOMIC_ACQUIRE); /* the copy is read before the positions */
	return nf_event_rings_committed(rings, cpu) <= position ||
	       nf_event_rings_head(rings, cpu) + EVENT_RECORD_MAX_BYTES <= position + NF_EVENT_CPU_RING_BYTES;
}

/* A watcher that fell a ring behind: it goes on where the consumer is, counting what it skips. */
static void watcher_skips(struct nf_event_rings *rings, __u32 cpu)
{
	__u64 tail = nf_event_rings_committed(rings, cpu);

	if (tail > rings->pending[cpu]) {
		rings->skipped += tail - rings->pending[cpu];
		rings->pending[cpu] = tail;
	}
}

int nf_event_rings_peek(struct nf_event_rings *rings, struct nf_event_record *records, int max)
{
	__u32 ready = 0;
	int count = 0;

	if (rings->watching && max > NF_EVENT_WATCH_BATCH)
		max = NF_EVENT_WATCH_BATCH;
	for (__u32 cpu = 0; cpu < rings->cpus; cpu++) {
		/* With nothing handed out, start where the ring's consumer is now: another reader may have
		 * moved it. A watcher reads on from its own place, behind the consumer if need be. */
		if (!rings->watching && rings->pending[cpu] == rings->committed[cpu])
			rings->pending[cpu] = rings->committed[cpu] = nf_event_rings_committed(rings, cpu);
		__u64 head = nf_event_rings_head(rings, cpu);

		/* Not positions one writer leaves (two at once can, see nf_event_reserve): start over where
		 * the writer will go on, at its head, or at the tail when the head went back behind it. A
		 * watcher a whole ring behind goes on at the tail. */
		if (head - rings->pending[cpu] > NF_EVENT_CPU_RING_BYTES) {
			__u64 tail = nf_event_rings_committed(rings, cpu);

			if (rings->watching && (__s64)(head - tail) >= 0 && (__s64)(tail - rings->pending[cpu]) > 0)
				watcher_skips(rings, cpu);
			else
				rings->pending[cpu] = (__s64)(head - tail) > 0 ? head : tail;
		}
		/* Each head read once per peek: what a CPU writes meanwhile waits for the next one. */
		if (rings->pending[cpu] < head) {
			rings->heads[ready] = head;
			rings->ready[ready++] = cpu;
		}
	}
	__u64 *heads = rings->heads;

	while (count < max && ready) {
		__u32 oldest = 0;
		const struct nf_event *first = NULL;

		for (__u32 index = 0; index < ready;) {
			const struct nf_event *event = event_at(rings, rings->ready[index], heads[index]);

			if (!event) {
				/* Drained, or what two writers at once left (a record running past what was
				 * published): its rest is dropped, the next record starts at the head. A
				 * watcher behind the consumer may be reading a record written anew. */
				__u32 cpu = rings->ready[index];

				if (rings->watching && nf_event_rings_committed(rings, cpu) > rings->pending[cpu])
					watcher_skips(rings, cpu);
				else if (rings->pending[cpu] < heads[index])
					rings->pending[cpu] = heads[index];
				rings->ready[index] = rings->ready[--ready];
				heads[index] = heads[ready];
				continue;
			}
			if (!first || event->timestamp_ns < first->timestamp_ns) {
				first = event;
				oldest = index;
			}
			index++;
		}
		if (!first)
			break;
		__u32 cpu = rings->ready[oldest], length = nf_event_record_bytes(first->captured);
		__u32 captured = first->captured;

		if (rings->watching) {
			__u8 *copy = rings->copies + (size_t)count * EVENT_RECORD_MAX_BYTES;

			/* Read once: the writer may be writing it again, and its length must not grow. */
			captured = ((const volatile struct nf_event *)first)->captured;
			if (captured > NF_MAX_SNAPLEN)
				captured = NF_MAX_SNAPLEN;
			length = nf_event_record_bytes(captured);
			memcpy(copy, first, sizeof(*first) + captured);
			if (!copy_is_whole(rings, cpu)) {
				watcher_skips(rings, cpu);
				continue;
			}
			first = (const struct nf_event *)copy;
		}
		rings->pending[cpu] += length;
		records[count].event = first;
		records[count].length = sizeof(*first) + captured;
		records[count].cpu = cpu;
		records[count].end = rings->pending[cpu];
		count++;
	}
	return count;
}

static void commit_ring(struct nf_event_rings *rings, __u32 cpu)
{
	__u64 *tail = &event_ring(rings, cpu)->tail;
	__u64 current = __atomic_load_n(tail, __ATOMIC_ACQUIRE);

	/* Never back: another reader may have given back more meanwhile. */
	while (current < rings->pending[cpu] &&
	       !__atomic_compare_exchange_n(tail, &current, rings->pending[cpu], 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
		;
	rings->committed[cpu] = rings->pending[cpu];
}

void nf_event_rings_commit(struct nf_event_rings *rings)
{
	for (__u32 cpu = 0; cpu < rings->cpus; cpu++)
		commit_ring(rings, cpu);
}

int nf_event_rings_skip_to(struct nf_event_rings *rings, __u32 cpu, __u64 position)
{
	if (cpu >= rings->cpus || position < nf_event_rings_committed(rings, cpu) || position > nf_event_rings_head(rings, cpu))
		return -EINVAL;
	rings->pending[cpu] = position;
	commit_ring(rings, cpu);
	return 0;
}

static void set_reader_sleeps_until(struct nf_event_rings *rings, __u64 until)
{
	for (__u32 cpu = 0; cpu < rings->cpus; cpu++)
		__atomic_store_n(&event_ring(rings, cpu)->reader_sleeps_until, until, __ATOMIC_RELAXED);
}

int nf_event_rings_wait(struct nf_event_rings *rings, int timeout_ms)
{
	struct nf_ring_record bells[64];
	struct timespec now;
	int status = 0;
	__u32 cpu = 0;

	/* A watcher polls: the doorbell and the sleep it announces are the consumer's. */
	if (rings->watching) {
		while (cpu < rings->cpus && nf_event_rings_head(rings, cpu) == rings->pending[cpu])
			cpu++;
		if (cpu == rings->cpus) {
			int ms = timeout_ms < WATCH_POLL_MS ? timeout_ms : WATCH_POLL_MS;
			struct timespec pause = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

			if (nanosleep(&pause, NULL) && errno != EINTR)
				return -errno;
		}
		return 0;
	}

	/* Asleep first, then look once more: a quarter filled in between rang no doorbell (the
	 * writer saw no sleeper) and must not wait for the timeout. The datapath compares the
	 * end of the sleep with its coarse clock, a tick behind at most: 10 ms more covers it. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	set_reader_sleeps_until(rings, (__u64)now.tv_sec * 1000000000ULL + (__u64)now.tv_nsec + ((__u64)timeout_ms + 10) * 1000000ULL);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	while (cpu < rings->cpus && nf_event_rings_head(rings, cpu) - rings->pending[cpu] < NF_EVENT_CPU_RING_BYTES / 4)
		cpu++;
	if (cpu == rings->cpus)
		status = nf_ring_wait(rings->doorbell, timeout_ms);
	set_reader_sleeps_until(rings, 0);

	/* The doorbell's records say only "look": drop them. */
	while (nf_ring_peek(rings->doorbell, bells, 64) == 64)
		;
	nf_ring_commit(rings->doorbell);
	return status;
}

static _Thread_local char last_warning[512];

static int capture_print(enum libbpf_print_level level, const char *format, va_list args)
{
	char line[sizeof(last_warning)];
	size_t len;

	if (level != LIBBPF_WARN)
		return 0;
	vsnprintf(line, sizeof(line), format, args);
	len = strcspn(line, "\n");
	line[len] = '\0';
	if (len)
		memcpy(last_warning, line, len + 1);
	return 0;
}

void nf_libbpf_capture_logs(void)
{
	libbpf_set_print(capture_print);
}

const char *nf_libbpf_last_warning(void)
{
	static _Thread_local char taken[sizeof(last_warning)];

	memcpy(taken, last_warning, sizeof(taken));
	last_warning[0] = '\0';
	return taken;
}
