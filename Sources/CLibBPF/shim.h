/* libbpf's public API, as the system installs it (Debian: libbpf-dev). */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <bpf/btf.h>
