// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Header-only module: this file gives SwiftPM a C target to build. */
#include "netfence_abi_module.h"
