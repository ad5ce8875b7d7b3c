#!/bin/bash
# issue 22: the testbed CLIP, its zero-shot accuracy, and the pooled colour sweep judged by both judges
cd /work/main
export OMP_NUM_THREADS=1
R=runs/fluxbed_pooled
while ! grep -q "colour k3 done" $R/log2.txt 2>/dev/null; do sleep 20; done
echo "clip start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
python - <<'PY'
import json
from saekit.testbed.fluxbed.clip import ClipTrainConfig, train_clip, zero_shot_accuracy
from saekit.testbed.fluxbed.config import FluxbedConfig
b = FluxbedConfig(**{k: v for k, v in json.load(open("runs/fluxbed/build_config.json")).items() if k != "schema"})
fig = train_clip(b, "runs/fluxbed_pooled/clip", ClipTrainConfig(), quiet=True)
fig["zero_shot_accuracy_heldout_renders"] = zero_shot_accuracy("runs/fluxbed_pooled/clip", b, n=600)
json.dump(fig, open("runs/fluxbed_pooled/clip/testbed_clip.json", "w"), indent=1)
print(fig)
PY
echo "clip done $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
python -m saekit sweep --model runs/fluxbed/pipeline --sae $R/sae --conditioning pooled --factor colour \
  --strengths 0.5 1 2 4 8 16 --methods additive clamp --build-config runs/fluxbed/build_config.json \
  --clip-judge $R/clip --out $R/colour_clipjudge --quiet
echo "colour clip-judged done $(date +%T)"
