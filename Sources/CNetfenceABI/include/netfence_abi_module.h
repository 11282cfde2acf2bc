/* The datapath ABI for Swift: the one header the BPF programs include. */
#include "../../../bpf/netfence_abi.h"
