#!/bin/bash
cd /tmp/steering_runs/code
export PYTHONPATH=/tmp/steering_runs/code OMP_NUM_THREADS=1
python -m saekit.cli sweep --sae /tmp/steering_runs/sae_L15 --protocol full --n-concepts 12 --n-train 3 --n-test 3 \
  --arms input:additive input:clamp input:surgery output:additive decompose:additive sae_ts:additive diffmean \
  --strengths 0.25norm,0.5norm --max-new-tokens 16 --threads 1 --out /tmp/steering_runs/sweep_L15
echo EXIT $?
