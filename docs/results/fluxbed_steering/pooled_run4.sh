#!/bin/bash
# issue 22: early vs late denoising steps at the in-loop image-stream site of the final build
cd /work/main
export OMP_NUM_THREADS=1
R=runs/fluxbed_pooled
python -m saekit sweep --model runs/fluxbed/pipeline --sae runs/fluxbed_lora/sae_tb1 --factor colour \
  --targets red green blue --strengths 4 16 64 --methods additive clamp --windows all early late \
  --build-config runs/fluxbed/build_config.json --out $R/colour_tb1_windows --quiet
echo "windows done $(date +%T)"
