#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the qdb-rw fuzz target over deterministic mutants of seed files.
exec "$srcdir/replay.sh" qdb-rw qdb 3000
