#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the qdb fuzz target over deterministic mutants of seed files.
exec "$srcdir/replay.sh" qdb qdb 5000
