"""Continue flow matching of a built fluxbed pipeline for more steps; score it like the build.

Usage (from the repository root, after `saekit testbed build --out runs/fluxbed`):
    OMP_NUM_THREADS=1 python docs/results/fluxbed/continued/continue_flow.py 4000
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from saekit.testbed.fluxbed.build import (
    fit_judges,
    load_pipeline,
    peak_rss_mib,
    save_pipeline,
    score_generations,
    train_renders,
)
from saekit.testbed.fluxbed.lora import read_build_config
from saekit.testbed.fluxbed.report import image_grid_png
from saekit.testbed.fluxbed.train import encode_latents, train_flow

torch.set_num_threads(1)
steps = int(sys.argv[1])
# the first build's own config (the defaults have changed since); no weight average, as when this was run
build = read_build_config("runs/fluxbed/pipeline", None)
cfg = dataclasses.replace(build, flow_steps=steps, flow_lr=1e-3, flow_ema=0.0, seed=0)
t = time.time()
pipe = load_pipeline("runs/fluxbed/pipeline")
data = train_renders(cfg)
z = encode_latents(pipe.vae, data.images)
lat = (z - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
gen = torch.Generator().manual_seed(123)
losses = train_flow(
    pipe.transformer,
    pipe.text_encoder,
    pipe.text_encoder_2,
    (pipe.tokenizer, pipe.tokenizer_2),
    lat,
    data.captions,
    pipe.scheduler,
    cfg,
    gen,
)
train_s = time.time() - t
out = Path("runs/fluxbed_cont")
out.mkdir(parents=True, exist_ok=True)
save_pipeline(
    dict(
        scheduler=pipe.scheduler,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        text_encoder_2=pipe.text_encoder_2,
        tokenizer_2=pipe.tokenizer_2,
        transformer=pipe.transformer,
    ),
    out,
)
J = fit_judges(cfg)
p2 = load_pipeline(out / "pipeline")
a, im, _ = score_generations(p2, J, cfg, heldout=False)
b, imh, _ = score_generations(p2, J, cfg, heldout=True)
res = dict(
    extra_flow_steps=steps,
    lr=1e-3,
    extra_train_s=round(train_s, 1),
    final_loss=float(np.mean(losses[-100:])),
    training_combinations=a,
    heldout_combinations=b,
    peak_rss_mib=peak_rss_mib(),
)
json.dump(res, open(out / "continued.json", "w"), indent=2)
open(out / "samples_train.png", "wb").write(image_grid_png(im[:32]))
print(json.dumps(res, indent=1))
