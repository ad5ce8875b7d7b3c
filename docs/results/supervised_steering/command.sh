#!/bin/bash
# the demo SAE copied to a scratch folder first (the sweep writes scales.json beside it):
#   mkdir -p /tmp/sup/sae_l15 && cp runs/bench/saes/topk_16x/{config.json,model.safetensors} /tmp/sup/sae_l15/
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python -m saekit.cli sweep --sae /tmp/sup/sae_l15 \
  --concepts saekit/steer/concept/data/heldout_concepts.json --n-concepts 10 \
  --prompts saekit/steer/concept/data/heldout_prompts.json --n-train 5 --n-test 5 \
  --arms input:additive decompose:additive confidence:additive sparse:additive free diffmean \
  --strengths 0.25norm,0.5norm --max-new-tokens 16 --threads 1 --quiet --out /tmp/sup/heldout_sweep
echo EXIT $?
