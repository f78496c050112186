/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Deterministic pseudo-random numbers (splitmix64) and the byte
 * pattern of each workload write, shared by the workload client and
 * the checker so that the checker can tell which write put a byte
 * there without storing the data.
 */

#ifndef PC_RNG_H
#define PC_RNG_H

#include <stdint.h>

static inline uint64_t
pc_mix (uint64_t z)
{
  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static inline uint64_t
pc_rng_next (uint64_t *state)
{
  *state += UINT64_C (0x9e3779b97f4a7c15);
  return pc_mix (*state);
}

static inline uint64_t
pc_rng_seed (uint64_t seed, uint64_t stream)
{
  return pc_mix (seed ^ pc_mix (stream + 1));
}

/* Byte OFFSET of the disk as written by write number ID.  Never 0, so
 * that a written byte is not mistaken for a zeroed one.
 */
static inline uint8_t
pc_pattern (uint64_t id, uint64_t offset)
{
  uint64_t h = pc_mix ((id << 40) ^ (offset >> 3));
  uint8_t b = (uint8_t) (h >> ((offset & 7) * 8));
  return b ? b : 0xa5;
}

#endif /* PC_RNG_H */
