#!/usr/bin/env bash
# issue 22: token-dependent (spatial) in-loop edits at transformer_blocks.1@image of the final build:
# spatial DiffMean (per-step, per-token mean difference) and the SAE's per-token feature maps.
# One thread, one process at a time (the shared 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=runs/fluxbed/pipeline BC=runs/fluxbed/build_config.json SAE=runs/fluxbed_lora/sae_tb1
T=docs/results/fluxbed_steering/spatial_timings.txt
stamp() { echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg): $*" | tee -a $T; }

stamp "position, 16 features, windows all/early: start"
python -m saekit sweep --model $P --sae $SAE --factor position --methods spatial spatial_clamp \
    --n-features 16 --strengths 1 2 4 8 --windows all early --build-config $BC \
    --out runs/comp_position_k16 --quiet
stamp "position, 16 features: done"
python -m saekit sweep --model $P --sae $SAE --factor position --methods spatial spatial_clamp \
    --n-features 1 --strengths 1 2 4 8 --build-config $BC --out runs/comp_position_k1 --quiet
stamp "position, 1 feature: done"
python -m saekit sweep --model $P --sae $SAE --factor colour --targets red green blue \
    --methods additive spatial spatial_clamp --n-features 16 --strengths 1 2 4 8 --build-config $BC \
    --out runs/comp_colour_k16 --quiet
stamp "colour, 16 features: done"

# after text_run.sh: how many features the spatial SAE edit needs (1 and 16 above)
python -m saekit sweep --model $P --sae $SAE --factor position --methods spatial spatial_clamp \
    --n-features 4 --strengths 1 2 4 8 --build-config $BC --out runs/comp_position_k4 --quiet
stamp "position, 4 features: done"
# the first command again, with the per-factor breakdown of what the chosen arms change (added after it ran;
# same seeds and prompts, so the same numbers)
python -m saekit sweep --model $P --sae $SAE --factor position --methods spatial spatial_clamp \
    --n-features 16 --strengths 1 2 4 8 --windows all early --build-config $BC \
    --out runs/comp_position_k16_kept --quiet
stamp "position, 16 features, rerun with the per-factor breakdown: done"
