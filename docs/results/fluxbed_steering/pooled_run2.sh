#!/bin/bash
# issue 22: zero-shot feature choice and k=3 features at the pooled site (after run.sh)
cd /work/main
export OMP_NUM_THREADS=1
R=runs/fluxbed_pooled
while ! grep -q "position done" $R/log.txt; do sleep 20; done
python -m saekit sweep --model runs/fluxbed/pipeline --sae $R/sae --conditioning pooled --factor colour \
  --strengths 0.5 1 2 4 8 16 --methods additive clamp --build-config runs/fluxbed/build_config.json \
  --select zero-shot --out $R/colour_zeroshot --quiet
echo "colour zero-shot done $(date +%T)"
python -m saekit sweep --model runs/fluxbed/pipeline --sae $R/sae --conditioning pooled --factor colour \
  --strengths 0.5 1 2 4 8 16 --methods additive clamp --build-config runs/fluxbed/build_config.json \
  --n-features 3 --out $R/colour_k3 --quiet
echo "colour k3 done $(date +%T)"
