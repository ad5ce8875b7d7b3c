#!/usr/bin/env bash
# SAE vs LoRA on the trained fluxbed FluxPipeline: the exact commands behind docs/results/fluxbed_lora/.
# One thread, one process at a time (the shared 2-core machine); about 35 minutes in all.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
P=runs/fluxbed/pipeline BC=runs/fluxbed/build_config.json W=runs/fluxbed_lora R=docs/results/fluxbed_lora
mkdir -p $W
stamp() { echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg): $*" | tee -a $R/timings.txt; }

# 1. the SAE: 400 training captions (training digit images, training combinations), harvested at 12 steps
python - <<'PY'
import numpy as np
from saekit.testbed.fluxbed.build import render_caption
from saekit.testbed.fluxbed.render import digit_split, sample_factors
train_idx, _ = digit_split(0, 0.25)
_, rows = sample_factors(train_idx, 400, np.random.default_rng(7), heldout=False)
open("runs/fluxbed_lora/captions.txt", "w").write("\n".join(render_caption(r) for r in rows) + "\n")
PY
stamp "harvest start"
python -m saekit harvest diffusion --model $P --hook-point transformer_blocks.1@image --prompts $W/captions.txt \
    --num-inference-steps 12 --height 32 --width 32 --tokens-per-step 0 --dtype float32 --device cpu \
    --tokens 100000 --threads 1 --out $W/acts_tb1 --quiet
stamp "harvest done; SAE train start"
python -m saekit train --acts $W/acts_tb1 --out $W/sae_tb1 --arch topk --k 8 --expansion 8 --batch-size 1024 \
    --total-tokens 1000000 --lr 1e-3 --num-threads 1 --device cpu --quiet
stamp "SAE train done"

# 2. one LoRA per target value (rank 4 on the attention projections, 400 steps of 16)
for fv in "colour red" "colour green" "colour blue" "colour yellow" "colour magenta" "colour cyan" \
          "position top left" "position top right" "position bottom left" "position bottom right"; do
  set -- $fv; f=$1; shift; v="$*"
  python -m saekit testbed lora --model $P --factor $f --value "$v" --out "$W/lora_${f}_${v// /_}" --quiet
  stamp "LoRA $f=$v done"
done

# 3. the sweeps: SAE (additive, clamp), DiffMean, prompting and the LoRA arm on the same prompts
python -m saekit sweep --model $P --sae $W/sae_tb1 --factor colour --strengths 1 4 16 64 --build-config $BC \
    --loras $W/lora_colour_{red,green,blue,yellow,magenta,cyan} --out $R/colour --quiet
stamp "colour sweep done"
python -m saekit sweep --model $P --sae $W/sae_tb1 --factor position --strengths 1 4 16 64 --build-config $BC \
    --loras $W/lora_position_{top_left,top_right,bottom_left,bottom_right} --out $R/position --quiet
stamp "position sweep done"

# 4. style and composition's second factors: thickness and size (one LoRA per value, then the sweep)
for fv in "thickness thin" "thickness thick" "size small" "size large"; do
  set -- $fv
  python -m saekit testbed lora --model $P --factor $1 --value $2 --out "$W/lora_$1_$2" --quiet
  stamp "LoRA $1=$2 done"
done
for f in thickness size; do
  python -m saekit sweep --model $P --sae $W/sae_tb1 --factor $f --strengths 1 4 16 64 --build-config $BC \
      --loras $W/lora_${f}_* --out $R/$f --quiet
  stamp "$f sweep done"
done

# 5. the SAE's best site so far: the pooled CLIP prompt vector (the SAE of docs/results/fluxbed_steering's
#    pooled_run.sh, runs/fluxbed_pooled/sae), against the same colour LoRAs on the same prompts
python -m saekit sweep --model $P --sae runs/fluxbed_pooled/sae --conditioning pooled --factor colour \
    --strengths 0.5 1 2 4 8 16 --methods additive clamp --build-config $BC \
    --loras $W/lora_colour_{red,green,blue,yellow,magenta,cyan} --out $R/colour_pooled --quiet
stamp "pooled colour sweep done"
