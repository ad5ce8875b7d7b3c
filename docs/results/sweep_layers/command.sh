#!/bin/bash
# Layers 5/10/20 beside 15 (run from the repository root).
# 1. one multi-hook harvest with the demo store's settings (default corpus, 200k rows, context 128, batch 8);
# 2. one TopK SAE per store with the demo recipe (k 32, 9216 latents, 600k tokens, batch 1024, lr 1e-3);
# 3. docs/results/sweep_protocol's protocol per layer (12 concepts, 3 train + 3 test prompts, 0.25norm /
#    0.5norm, 16 new tokens), one process per layer. On the shared machine (load 15-20) only the arms
#    without output scoring were run at 5/10/20 (input:additive, input:clamp, input:surgery,
#    decompose:additive, diffmean) and the layer-independent prompting baseline was taken from the
#    layer-15 run (--no-prompting; greedy, same prompts, same code); 3b runs the two output-scored arms;
# 4. merge with the layer-15 run; --common keeps the concepts every run finished (a stopped run leaves
#    sweep.partial.json after every concept).
# The runs used a frozen copy of the code (git archive HEAD) because the worktree was edited meanwhile.
set -e
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
D=/work/data/layers
python -m saekit.cli harvest lm --model smollm2 --hook-point model.layers.5,model.layers.10,model.layers.20 \
  --corpus default --tokens 200000 --context-len 128 --batch-size 8 --threads 1 --out $D/acts
for L in 5 10 20; do
  ( python -m saekit.cli train --acts $D/acts/model.layers.$L --out $D/sae/L$L --arch topk --k 32 \
      --expansion 16 --total-tokens 600000 --batch-size 1024 --lr 0.001 --num-threads 1 --quiet
    python -m saekit.cli sweep --sae $D/sae/L$L --protocol full --n-concepts 12 --n-train 3 --n-test 3 \
      --arms input:additive input:clamp input:surgery decompose:additive diffmean --no-prompting \
      --strengths 0.25norm,0.5norm --max-new-tokens 16 --threads 1 --out $D/sweep_L$L ) > $D/chain_L$L.log 2>&1 &
done
wait
# 3b. the two output-scored arms at 5/10/20, run later on a quiet machine as separate runs (merged per layer x arm)
for L in 5 10 20; do
  python -m saekit.cli sweep --sae $D/sae/L$L --protocol full --n-concepts 12 --n-train 3 --n-test 3 \
    --arms output:additive sae_ts:additive --no-prompting --strengths 0.25norm,0.5norm --max-new-tokens 16 \
    --threads 1 --out $D/sweep_out_L$L > $D/out_L$L.log 2>&1 &
done
wait
pick() { if [ -f $1/sweep.json ]; then echo $1/sweep.json; else echo $1/sweep.partial.json; fi; }
python scripts/merge_sweeps.py --common --out docs/results/sweep_layers docs/results/sweep_protocol/sweep.json \
  $(pick $D/sweep_L5) $(pick $D/sweep_L10) $(pick $D/sweep_L20) \
  $D/sweep_out_L5/sweep.json $D/sweep_out_L10/sweep.json $D/sweep_out_L20/sweep.json
