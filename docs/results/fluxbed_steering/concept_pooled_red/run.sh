#!/bin/bash
# issue 22: the CLIP-judged concept sweep (what a FLUX.1 user runs) on the testbed FluxPipeline, pooled site.
# prompts.txt: 60 testbed captions asking for another colour, TAB the same caption asking for red.
cd /work/main
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 /usr/bin/time -v python -m saekit sweep --model runs/fluxbed/pipeline \
  --sae runs/fluxbed_pooled/sae --conditioning pooled --concept red \
  --prompts docs/results/fluxbed_steering/concept_pooled_red/prompts.txt --clip-judge runs/fluxbed_pooled/clip \
  --strengths 1 2 4 8 16 --methods additive clamp --n-select 16 --n-train 12 --n-test 24 \
  --num-inference-steps 12 --height 32 --width 32 --max-sequence-length 512 --dtype float32 --device cpu \
  --batch 24 --out runs/concept_sweep/pooled_red_pairs
