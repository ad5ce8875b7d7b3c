#!/bin/bash
# Layers 5/10/20: one multi-hook harvest (the demo store's settings: default corpus, 200k rows, ctx 128),
# one TopK SAE per store (the demo recipe: k 32, 9216 latents, 600k tokens, batch 1024, lr 1e-3), then the
# sweep_protocol command per layer (12 concepts x 3+3 prompts, 7 arms, 0.25norm/0.5norm, 16 tokens),
# one process per layer, merged by saekit.steer.sweep_merge with the layer-15 run of docs/results/sweep_protocol.
set -e
cd "$(dirname "$0")/../../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
D=/work/data/layers
python -m saekit.cli harvest lm --model smollm2 --hook model.layers.5,model.layers.10,model.layers.20 \
  --corpus default --tokens 200000 --context-len 128 --batch-size 8 --threads 1 --out $D/acts
for L in 5 10 20; do
  python -m saekit.cli train --acts $D/acts/model.layers.$L --out $D/sae/L$L --arch topk --k 32 --expansion 16 \
    --total-tokens 600000 --batch-size 1024 --lr 0.001 --num-threads 1 --quiet
  nohup nice python -m saekit.cli sweep --sae $D/sae/L$L --protocol full --n-concepts 12 --n-train 3 --n-test 3 \
    --arms input:additive input:clamp input:surgery output:additive decompose:additive sae_ts:additive diffmean \
    --strengths 0.25norm,0.5norm --max-new-tokens 16 --threads 1 --quiet --out $D/sweep_L$L > $D/sweep_L$L.log 2>&1 &
done
wait
python -m saekit.steer.sweep_merge --out docs/results/sweep_layers $D/sweep_L5/sweep.json $D/sweep_L10/sweep.json \
  docs/results/sweep_protocol/sweep.json $D/sweep_L20/sweep.json
