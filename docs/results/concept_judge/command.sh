#!/bin/bash
# The in-command judge of `saekit steer --concept`, measured (issue 23). SAE: the one of docs/results/steer_carry
# (the demo's 16x SAE at layer 15, copied to /tmp/h23/demo). 2-core AMD EPYC, 1 thread.
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
B=benchmarks/concept_judge.py
R=docs/results/concept_judge
# the judge's own texts: the model's answers to JUDGE_PROMPT (seed JUDGE_SEED) for every concept name
python $B texts --sae /tmp/h23/demo/sae --out $R/judge_texts.json
# hand labels, and every try of the steer_carry runs re-judged (dev chooses, held-out reports)
python $B score --texts $R/judge_texts.json \
  --runs docs/results/steer_carry/dev_protocol.json docs/results/steer_carry/heldout_test.json > $R/tables.md
# the library call itself (what `saekit steer --concept` runs) on the first test prompt of each held-out concept
python benchmarks/steer_carry.py check --sae /tmp/h23/demo/sae --source both --n-prompts 1 \
  --out $R/check_heldout.json
