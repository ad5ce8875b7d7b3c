"""Score a built fluxbed pipeline exactly as the build does (its own prompts, seeds and judges), but with
FluxPipeline's true classifier-free guidance against the empty prompt at each `true_cfg_scale` given.

Usage (from the repository root, after `saekit testbed build --out runs/fluxbed2`):
    OMP_NUM_THREADS=1 python docs/results/fluxbed/build2/score_true_cfg.py runs/fluxbed2 512 1 3 5 7 10
(the second argument is `max_sequence_length`, the pipeline's T5 padding; a scale of 1 is no guidance)
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from saekit.testbed.fluxbed.build import fit_judges, load_pipeline, score_generations
from saekit.testbed.fluxbed.lora import read_build_config

torch.set_num_threads(1)
run, max_len, scales = Path(sys.argv[1]), int(sys.argv[2]), [float(s) for s in sys.argv[3:]]
cfg = dataclasses.replace(read_build_config(run / "pipeline", None), quiet=True)
judges = fit_judges(cfg)
pipe = load_pipeline(run / "pipeline")
rows = []
for scale in scales:
    for heldout in (False, True):
        t = time.process_time()
        kw = dict(max_sequence_length=max_len)
        if scale > 1:
            kw.update(true_cfg_scale=scale, negative_prompt=[""] * cfg.eval_batch)
        acc, _, _ = score_generations(pipe, judges, cfg, heldout=heldout, **kw)
        row = {"true_cfg_scale": scale, "max_sequence_length": max_len, "heldout": heldout, "accuracy": acc,
               "cpu_s": round(time.process_time() - t, 1)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
(run / f"true_cfg_{max_len}.json").write_text(json.dumps(rows, indent=1))
