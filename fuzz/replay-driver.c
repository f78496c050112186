/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A tiny mutation fuzzer, so that the fuzz targets also run in "make
 * check" without libFuzzer (and under ASan/UBSan in the sanitizer
 * build): each seed file given on the command line is mutated
 * ITERATIONS times (bit flips, byte sets to boundary values, 64-bit
 * fields set to interesting values, truncation) with a fixed PRNG
 * seed, and every mutant is passed to LLVMFuzzerTestOneInput.
 *
 * Peak memory: the heap is accounted (peak-alloc.c) and the peak of
 * live bytes during each input, above what was live before it, is
 * measured.  With FUZZ_PEAK_LIMIT=BYTES in the environment, an input
 * whose peak passes BYTES fails the run; it is saved as
 * peak-failure.bin to reproduce.  The largest peak is always printed.
 */

#include <config.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peak-alloc.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static uint64_t state = 0x9e3779b97f4a7c15;

static uint64_t
next (void)
{
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

static void
mutate (uint8_t *d, size_t *size, size_t max)
{
  static const uint64_t interesting[] = {
    0, 1, 2, 3, 511, 512, 4095, 4096, 65535, 65536, 65537,
    UINT32_MAX, (uint64_t) UINT32_MAX + 1, INT64_MAX, UINT64_MAX,
    UINT64_MAX - 511, 1ULL << 40, 1ULL << 26, 1ULL << 27,
  };
  unsigned n = next () % 4 + 1, i;

  for (i = 0; i < n && *size > 0; ++i) {
    /* Bias towards the header, where the interesting fields live. */
    size_t at = next () % 2 ? next () % (*size < 128 ? *size : 128)
                            : next () % *size;
    switch (next () % 5) {
    case 0: d[at] ^= 1 << (next () % 8); break;
    case 1: d[at] = next () % 2 ? 0xff : 0; break;
    case 2: {
      uint64_t v = interesting[next () % (sizeof interesting /
                                          sizeof interesting[0])];
      size_t w = next () % 2 ? 8 : 4;
      if (at + w <= *size)
        memcpy (&d[at & ~(w - 1)], &v, w);
      break;
    }
    case 3: if (next () % 8 == 0) *size = next () % *size; break;
    case 4: d[at] = next (); break;
    }
  }
  (void) max;
}

static size_t peak_limit;       /* FUZZ_PEAK_LIMIT, 0 = none */
static size_t worst;            /* largest peak seen */
static const char *worst_seed;
static long worst_it;

/* Run one input, measuring its peak heap above what was live before. */
static void
run_one (const uint8_t *d, size_t n, const char *seed, long it)
{
  size_t before = peak_alloc_live (), used;

  peak_alloc_reset ();
  LLVMFuzzerTestOneInput (d, n);
  used = peak_alloc_peak () - before;
  if (used > worst) {
    worst = used;
    worst_seed = seed;
    worst_it = it;
  }
  if (peak_limit && used > peak_limit) {
    FILE *fp = fopen ("peak-failure.bin", "wb");
    if (fp) {
      fwrite (d, 1, n, fp);
      fclose (fp);
    }
    fprintf (stderr, "%s: mutant %ld: peak heap %zu bytes exceeds "
             "FUZZ_PEAK_LIMIT=%zu (input saved as peak-failure.bin)\n",
             seed, it, used, peak_limit);
    exit (EXIT_FAILURE);
  }
}

int
main (int argc, char **argv)
{
  long iterations;
  const char *limit = getenv ("FUZZ_PEAK_LIMIT");
  int i;

  if (argc < 3) {
    fprintf (stderr, "usage: %s ITERATIONS SEED-FILE...\n", argv[0]);
    return EXIT_FAILURE;
  }
  iterations = atol (argv[1]);
  if (limit && *limit)
    peak_limit = strtoull (limit, NULL, 0);
  for (i = 2; i < argc; ++i) {
    FILE *fp = fopen (argv[i], "rb");
    uint8_t *seed, *d;
    size_t size, n;
    long it;

    if (fp == NULL) {
      perror (argv[i]);
      return EXIT_FAILURE;
    }
    seed = malloc (4 << 20);
    d = malloc (4 << 20);
    size = fread (seed, 1, 4 << 20, fp);
    fclose (fp);
    run_one (seed, size, argv[i], -1);
    for (it = 0; it < iterations; ++it) {
      memcpy (d, seed, size);
      n = size;
      mutate (d, &n, 4 << 20);
      run_one (d, n, argv[i], it);
    }
    free (seed);
    free (d);
    printf ("%s: %ld mutants\n", argv[i], iterations);
  }
  if (peak_alloc_enabled ())
    printf ("peak heap: %zu bytes (%s, mutant %ld)%s\n", worst,
            worst_seed ? worst_seed : "-", worst_it,
            peak_limit ? ", within FUZZ_PEAK_LIMIT" : "");
  else
    printf ("peak heap: not measured (sanitizer allocator)\n");
  return 0;
}
