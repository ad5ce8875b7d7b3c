#!/bin/bash
# Historical record: the digits testbed code this ran was removed (last in commit 727e68a); the testbed now is `saekit testbed build`.
# Class-to-class study (saekit.testbed.c2c): the testbed_c2c generator/classifier/SAE cache (same config
# keys: default generator, 200 harvest images, 300 SAE steps; the text-stream SAEs are trained on first use),
# source-aware edits at cond / text / image / cond+text / cond+text+image, strength chosen on the choose split
# (noise seed+1000, 5 sources per target = 50), reported on the report split (seed+3000, all 90 ordered pairs).
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
python scripts/testbed_c2c_study.py --cache /work/data/layers/testbed --out docs/results/testbed_c2c
