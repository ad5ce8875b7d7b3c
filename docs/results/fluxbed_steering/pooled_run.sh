#!/bin/bash
# issue 22: the pooled-CLIP conditioning site on the final fluxbed build
set -e
cd /work/main
export OMP_NUM_THREADS=1
R=runs/fluxbed_pooled
python - <<'PY'
import json, numpy as np
from saekit.testbed.fluxbed.render import digit_split, sample_factors
from saekit.testbed.fluxbed.build import render_caption
train, _ = digit_split(0, 0.25)
_, f = sample_factors(train, 4000, np.random.default_rng(7), heldout=False)
with open("runs/fluxbed_pooled/captions.jsonl", "w") as fh:
    for r in f[:4000]:
        fh.write(json.dumps({"caption": render_caption(r)}) + "\n")
PY
python -m saekit harvest clip --model runs/fluxbed/pipeline/text_encoder --captions $R/captions.jsonl \
  --site text:pooled --tokens 4000 --dtype float32 --store-dtype float32 --device cpu --out $R/acts --quiet
python -m saekit train --acts $R/acts --out $R/sae --k 8 --expansion 8 --batch-size 256 \
  --total-tokens 400000 --lr 1e-3 --device cpu --quiet
echo "trained $(date +%T)"
python -m saekit sweep --model runs/fluxbed/pipeline --sae $R/sae --conditioning pooled --factor colour \
  --strengths 0.5 1 2 4 8 16 --methods additive clamp --build-config runs/fluxbed/build_config.json \
  --out $R/colour --quiet
echo "colour done $(date +%T)"
python -m saekit sweep --model runs/fluxbed/pipeline --sae $R/sae --conditioning pooled --factor position \
  --strengths 0.5 1 2 4 8 16 --methods additive clamp --build-config runs/fluxbed/build_config.json \
  --out $R/position --quiet
echo "position done $(date +%T)"
