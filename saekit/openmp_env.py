"""OpenMP settings saekit needs before torch is loaded (imported first by `saekit/__init__`).

libgomp, torch's OpenMP runtime on Linux, lets each worker spin for 300,000 iterations after a parallel
region before it sleeps. When another process holds one of the cores, a spinning or descheduled worker
makes every small parallel op (thousands per generated token) wait for a scheduler slice. Measured on
2 cores with one core kept busy by another process: `saekit demo --quick` took over 300 s (steering alone
38 s instead of 7.5 s) with the default, and 110 s with a spin of 20,000; on the quiet machine both
took 42 s. A value the user set is kept; with torch already imported (a notebook that imported it
first) this has no effect.
"""

from __future__ import annotations

import os

SPIN = "20000"

os.environ.setdefault("GOMP_SPINCOUNT", SPIN)
