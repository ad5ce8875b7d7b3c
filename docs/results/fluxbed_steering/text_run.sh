#!/usr/bin/env bash
# issue 22: the T5 token site (--conditioning text) for composition: an SAE on T5 token rows of the
# pipeline's own encode_prompt (4,000 training captions, first 24 tokens each), then the position sweep.
# One thread, one process at a time (the shared 2-core machine); run after spatial_run.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=runs/fluxbed/pipeline BC=runs/fluxbed/build_config.json W=runs/comp_t5
T=docs/results/fluxbed_steering/spatial_timings.txt
stamp() { echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg): $*" | tee -a $T; }
mkdir -p $W
stamp "T5 rows harvest start"
python - <<'PY'
import json
from saekit.data.harvest.flux_text import harvest_t5_rows
# the training captions of pooled_run.sh (training digit images, training combinations)
caps = [json.loads(line)["caption"] for line in open("runs/fluxbed_pooled/captions.jsonl")]
m = harvest_t5_rows("runs/fluxbed/pipeline", caps, "runs/comp_t5/acts", tokens_per_caption=24, overwrite=True)
print(m["count"], "rows")
PY
stamp "T5 rows harvested; SAE train start"
python -m saekit train --acts $W/acts --out $W/sae --arch topk --k 8 --expansion 8 --batch-size 1024 \
    --total-tokens 1000000 --lr 1e-3 --num-threads 1 --device cpu --quiet
stamp "T5 SAE trained"
python -m saekit sweep --model $P --sae $W/sae --conditioning text --factor position \
    --methods additive clamp spatial spatial_clamp --n-features 4 --strengths 1 2 4 8 --build-config $BC \
    --out runs/comp_text_position --quiet
stamp "T5 position sweep done"

# the uniform push at much larger strengths (added after the first sweep: the token-averaged shift over all
# 512 T5 rows is ~1% of the shift at the caption's own tokens, the padding rows do not move at all)
python -m saekit sweep --model $P --sae $W/sae --conditioning text --factor position \
    --methods additive --n-features 4 --strengths 16 64 256 1024 --build-config $BC \
    --out runs/comp_text_position_uniform_large --quiet
stamp "T5 position sweep, uniform pushes 16-1024x: done"

# one SAE feature per target at the T5 site, per-token (spatial) methods
python -m saekit sweep --model $P --sae $W/sae --conditioning text --factor position \
    --methods spatial spatial_clamp --n-features 1 --strengths 1 2 4 8 --build-config $BC \
    --out runs/comp_text_position_k1 --quiet
stamp "T5 position sweep, 1 feature: done"

# the first T5 sweep again, with the per-factor breakdown (added after it ran; same seeds, same numbers)
python -m saekit sweep --model $P --sae $W/sae --conditioning text --factor position \
    --methods additive clamp spatial spatial_clamp --n-features 4 --strengths 1 2 4 8 --build-config $BC \
    --out runs/comp_text_position_kept --quiet
stamp "T5 position sweep, rerun with the per-factor breakdown: done"
