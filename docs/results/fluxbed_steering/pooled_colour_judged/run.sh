#!/bin/bash
# issue 22: features chosen from the images they are most active on, as the factor judge reads them
# (--select judged), at the pooled CLIP site, colour; the SAE and prompts of pooled_run.sh.
# 2-core AMD EPYC, 1 thread, load 2.0-3.2 (one other session): 6 min 8 s.
cd /work/main
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 /usr/bin/time -v python -m saekit sweep --model runs/fluxbed/pipeline \
  --sae runs/fluxbed_pooled/sae --conditioning pooled --factor colour --strengths 0.5 1 2 4 8 16 \
  --methods additive clamp --select judged --build-config runs/fluxbed/build_config.json \
  --out runs/fluxbed_pooled/colour_judged --quiet
