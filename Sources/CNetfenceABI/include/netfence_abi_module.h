/* The datapath ABI for Swift: the one header the BPF programs include. */
#include "../../../bpf/netfence_abi.h"
/* The AWS network-policy agent's layouts, which netfence reads on an EKS node. */
#include "../../../bpf/aws_agent_abi.h"
