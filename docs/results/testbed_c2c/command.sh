#!/bin/bash
# Historical record: the digits testbed code this ran was removed (last in commit 727e68a); the testbed now is `saekit testbed build`.
# generator + classifier: a read-only copy of an already trained default-config cache (same model key)
cd /tmp/steering_runs/code
export PYTHONPATH=/tmp/steering_runs/code OMP_NUM_THREADS=1
python -m saekit.cli testbed --out /tmp/steering_runs/testbed_c2c --config.depths late cond all \
  --config.streams image --config.methods additive clamp diffmean sae_ts --config.units norm \
  --config.rel-strengths 0.5 1 2 4 --config.windows all --config.eval-per-target 5 --config.scenarios other null \
  --config.harvest-images 200 --config.sae-steps 300 --config.threads 1
echo EXIT $?
