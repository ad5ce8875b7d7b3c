#!/bin/bash
# The demo's SAE (saekit demo --out DIR; DIR/sae with its scales.json), copied to a scratch folder first:
#   cp -r DIR /tmp/h23/demo
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
B=benchmarks/steer_carry.py
R=docs/results/steer_carry
# dev: choose the ladder and the concept-text source (6 protocol concepts, 2 train prompts, words path forced)
python $B run --sae /tmp/h23/demo/sae --concepts protocol --n-concepts 6 --prompts protocol --split train \
  --n-prompts 2 --out $R/dev_protocol.json
# held-out: report (10 held-out concepts x 5 held-out test prompts)
python $B run --sae /tmp/h23/demo/sae --concepts heldout --prompts heldout --split test \
  --sources templates,both --out $R/heldout_test.json
# the library call itself (steer_concept, default verification) on the first test prompt of each concept
python $B check --sae /tmp/h23/demo/sae --source both --n-prompts 1 --out $R/check_heldout.json
python $B table $R/dev_protocol.json --min-concept 0.2 0.5 > $R/table_dev.md
python $B table $R/heldout_test.json --min-concept 0.2 --paired > $R/table_heldout.md
# the protocol with the ladder's widest SAE arm (DiffMean in 16 SAE directions) vs DiffMean, held-out set
python -m saekit.cli sweep --sae /tmp/h23/demo/sae --concepts saekit/steer/concept/data/heldout_concepts.json \
  --n-concepts 10 --prompts saekit/steer/concept/data/heldout_prompts.json --n-train 5 --n-test 5 \
  --arms decompose:additive diffmean --selection.decompose-k 16 --strengths 0.25norm,0.5norm \
  --max-new-tokens 16 --no-prompting --threads 1 --quiet --out /tmp/h23/sweep16
