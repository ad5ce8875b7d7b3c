#!/bin/bash
# issue 22: the two best sites rerun on the second build (runs/fluxbed2: 16 image tokens, EMA; the new
# default of `saekit testbed build`): colour at the pooled CLIP vector, position at the T5 token embeddings
# with per-token edits. Same captions, SAE recipes and sweep settings as pooled_run.sh and text_run.sh.
# Two processes side by side, 1 thread each, on the 2-core AMD EPYC (no other session running).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=runs/fluxbed2/pipeline BC=runs/fluxbed2/build_config.json
colour() {
  python -m saekit harvest clip --model $P/text_encoder --captions runs/fluxbed_pooled/captions.jsonl \
    --site text:pooled --tokens 4000 --dtype float32 --store-dtype float32 --device cpu --out runs/fb2_pooled/acts --quiet
  python -m saekit train --acts runs/fb2_pooled/acts --out runs/fb2_pooled/sae --k 8 --expansion 8 --batch-size 256 \
    --total-tokens 400000 --lr 1e-3 --device cpu --quiet
  python -m saekit sweep --model $P --sae runs/fb2_pooled/sae --conditioning pooled --factor colour \
    --strengths 0.5 1 2 4 8 16 --methods additive clamp --build-config $BC --out runs/fb2_pooled/colour --quiet
}
position() {
  python - <<'PY'
import json
from saekit.data.harvest.flux_text import harvest_t5_rows
caps = [json.loads(line)["caption"] for line in open("runs/fluxbed_pooled/captions.jsonl")]
harvest_t5_rows("runs/fluxbed2/pipeline", caps, "runs/fb2_t5/acts", tokens_per_caption=24, overwrite=True)
PY
  python -m saekit train --acts runs/fb2_t5/acts --out runs/fb2_t5/sae --arch topk --k 8 --expansion 8 \
    --batch-size 1024 --total-tokens 1000000 --lr 1e-3 --num-threads 1 --device cpu --quiet
  python -m saekit sweep --model $P --sae runs/fb2_t5/sae --conditioning text --factor position \
    --methods spatial spatial_clamp --n-features 4 --strengths 1 2 4 8 --build-config $BC \
    --out runs/fb2_t5/position --quiet
}
(time colour) > runs/fb2_colour.log 2>&1 &
(time position) > runs/fb2_position.log 2>&1 &
wait
