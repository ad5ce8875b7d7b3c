#!/bin/bash
# Layers 5/10/20 beside 15: one multi-hook harvest with the demo store's settings (default corpus,
# 200k rows, context 128, batch 8), one TopK SAE per store with the demo recipe (k 32, 9216 latents,
# 600k tokens, batch 1024, lr 1e-3), then docs/results/sweep_protocol's command per layer (12 concepts,
# 3 train + 3 test prompts, 7 arms, 0.25norm/0.5norm, 16 new tokens), one process per layer so they
# share the 2 cores, merged with the layer-15 run of docs/results/sweep_protocol (same protocol).
# The runs used a frozen copy of the code (git archive) because the worktree was edited meanwhile.
set -e
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
D=/work/data/layers
python -m saekit.cli harvest lm --model smollm2 --hook model.layers.5,model.layers.10,model.layers.20 \
  --corpus default --tokens 200000 --context-len 128 --batch-size 8 --threads 1 --out $D/acts
for L in 5 10 20; do
  ( python -m saekit.cli train --acts $D/acts/model.layers.$L --out $D/sae/L$L --arch topk --k 32 \
      --expansion 16 --total-tokens 600000 --batch-size 1024 --lr 0.001 --num-threads 1 --quiet
    python -m saekit.cli sweep --sae $D/sae/L$L --protocol full --n-concepts 12 --n-train 3 --n-test 3 \
      --arms input:additive input:clamp input:surgery output:additive decompose:additive sae_ts:additive diffmean \
      --strengths 0.25norm,0.5norm --max-new-tokens 16 --threads 1 --out $D/sweep_L$L ) > $D/chain_L$L.log 2>&1 &
done
wait
# a run stopped before its 12th concept leaves sweep.partial.json; --common keeps the concepts all finished
python scripts/merge_sweeps.py --common --out docs/results/sweep_layers \
  $D/sweep_L5/sweep*.json $D/sweep_L10/sweep*.json docs/results/sweep_protocol/sweep.json $D/sweep_L20/sweep*.json
