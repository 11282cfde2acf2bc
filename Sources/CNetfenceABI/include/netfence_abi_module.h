/* The datapath ABI for Swift: the one header the BPF programs include. */
#include "../../../bpf/netfence_abi.h"
/* The AWS network-policy agent's layouts, which netfence reads on an EKS node. */
#include "../../../bpf/aws_agent_abi.h"

#include <stddef.h>

/* Where a chunk's bytes start in struct nf_object_chunk. Swift reads and writes
 * them through this offset: as a field, the 4,088-byte array is a tuple type
 * whose metadata every process would build at run time (a millisecond). */
static inline size_t nf_object_chunk_data_offset(void)
{
	return offsetof(struct nf_object_chunk, data);
}

/* The size of one CPU's event ring and where its positions are: Swift must not import its
 * data array as a tuple. */
static inline size_t nf_event_ring_size(void)
{
	return sizeof(struct nf_event_ring);
}

static inline size_t nf_event_ring_tail_offset(void)
{
	return offsetof(struct nf_event_ring, tail);
}

static inline size_t nf_event_ring_reader_sleeps_until_offset(void)
{
	return offsetof(struct nf_event_ring, reader_sleeps_until);
}
