"""`build_fluxbed`: render, train, save a diffusers FluxPipeline folder, fit the judges, score generations.

Layout of the output folder:

    out/pipeline/            an ordinary diffusers FluxPipeline folder (model_index.json, transformer/,
                             vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/)
    out/build_config.json    the FluxbedConfig
    out/report.json, report.md, samples.png   the figures (see `report.py`)

The pipeline folder is written into a temporary sibling and renamed into place, so a killed build never
leaves a half-written pipeline behind.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from saekit.atomic import write_json_atomic
from saekit.testbed.fluxbed.config import FluxbedConfig
from saekit.testbed.fluxbed.judges import FactorJudges, factor_accuracy
from saekit.testbed.fluxbed.render import (
    CANVAS,
    N_VALUES,
    Factors,
    Render,
    caption,
    digit_split,
    parse_caption,
    render,
    sample_factors,
)

PIPELINE_DIR = "pipeline"


@dataclass
class BuildResult:
    """What `build_fluxbed` made: the pipeline folder, the fitted judges and the report dict."""

    pipeline_dir: Path
    judges: FactorJudges
    report: dict


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if os.uname().sysname != "Darwin" else peak / 2**20


def fit_judges(cfg: FluxbedConfig) -> FactorJudges:
    """The factor judges fitted on renders of the training digit images, with `accuracy` measured on
    renders of the test digit images (every factor combination, held out or not)."""
    rng = np.random.default_rng(cfg.seed + 1)
    train_idx, test_idx = digit_split(cfg.seed, cfg.test_fraction)
    fit_on = render(*sample_factors(train_idx, cfg.judge_train_renders, rng, heldout=None), rng)
    test_on = render(*sample_factors(test_idx, cfg.judge_test_renders, rng, heldout=None), rng)
    judges = FactorJudges.fit(fit_on.images, fit_on.factors, seed=cfg.seed)
    judges.accuracy = judges.score(test_on.images, test_on.factors)
    return judges


def save_pipeline(components: dict, out: Path) -> Path:
    """Save a FluxPipeline of `components` to `out/pipeline`, atomically (temp folder, then rename)."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline(**components)
    final = out / PIPELINE_DIR
    tmp = out / f".{PIPELINE_DIR}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(tmp, safe_serialization=True)
    if final.exists():
        old = out / f".{PIPELINE_DIR}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def load_pipeline(path: str | Path):
    """`FluxPipeline.from_pretrained(path)` in float32 on the CPU, progress bar off."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(path), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(
    pipe, prompts: list[str] | None, seed: int, steps: int, batch: int, quiet: bool = True, **kw
) -> torch.Tensor:
    """`pipe(prompt=...)` at the testbed's 32x32 size: images `[N, 3, 32, 32]` in [0, 1]. Each image's
    noise comes from its own generator seeded `seed + i`, so an image does not depend on the batching.
    `prompts=None` with `prompt_embeds=` and `pooled_prompt_embeds=` in `kw` (one row per image, e.g. an
    edited pooled vector) generates from those instead; they are sliced per batch."""
    embeds = {k: kw.pop(k) for k in ("prompt_embeds", "pooled_prompt_embeds") if k in kw}
    if (prompts is None) != bool(embeds):
        raise ValueError(
            "generate: give prompts, or prompts=None with prompt_embeds and pooled_prompt_embeds"
        )
    n = len(prompts) if prompts is not None else len(embeds["prompt_embeds"])
    out = []
    for i in tqdm(range(0, n, batch), desc="generating", disable=quiet, leave=False):
        m = min(batch, n - i)
        gens = [torch.Generator().manual_seed(seed + i + j) for j in range(m)]
        text = {"prompt": prompts[i : i + m]} if prompts is not None else {
            k: v[i : i + m] for k, v in embeds.items()}  # fmt: skip
        res = pipe(
            **text,
            height=CANVAS,
            width=CANVAS,
            num_inference_steps=steps,
            guidance_scale=0.0,
            generator=gens,
            output_type="pt",
            **kw,
        )
        out.append(res.images.float().cpu())
    return torch.cat(out)


def score_generations(
    pipe, judges: FactorJudges, cfg: FluxbedConfig, *, heldout: bool, **kw
) -> tuple[dict[str, float], torch.Tensor, list[str]]:
    """Per-factor accuracy of `pipe`'s generations against their captions, for `eval_prompts` prompts of
    training combinations (`heldout=False`) or held-out ones (True). Returns (accuracy, images, prompts)."""
    rng = np.random.default_rng(cfg.seed + (3 if heldout else 2))
    _, test_idx = digit_split(cfg.seed, cfg.test_fraction)
    _, factors = sample_factors(test_idx, cfg.eval_prompts, rng, heldout=heldout)
    prompts = [render_caption(f) for f in factors]
    images = generate(
        pipe, prompts, cfg.seed + 1000 * (1 + heldout), cfg.eval_steps, cfg.eval_batch, quiet=cfg.quiet, **kw
    )
    truth = np.array([list(parse_caption(p)) for p in prompts])
    pred, _ = judges.predict(images)
    return factor_accuracy(pred, truth), images, prompts


def render_caption(f) -> str:
    """The caption of one factor row `[5]` (FACTORS order)."""
    return caption(Factors(*(int(v) for v in f)))


def train_renders(cfg: FluxbedConfig) -> Render:
    """The training set: renders of training digit images in training factor combinations only."""
    rng = np.random.default_rng(cfg.seed)
    train_idx, _ = digit_split(cfg.seed, cfg.test_fraction)
    return render(*sample_factors(train_idx, cfg.n_train_renders, rng, heldout=False), rng)


def build_fluxbed(cfg: FluxbedConfig, out: str | Path, *, threads: int | None = None) -> BuildResult:
    """Build the testbed into `out` (see the module docstring) and return its figures."""
    from saekit.testbed.fluxbed import components as C
    from saekit.testbed.fluxbed.report import write_report
    from saekit.testbed.fluxbed.train import encode_latents, latent_stats, train_flow, train_vae

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "build_config.json", {"schema": 1, **cfg.to_dict()})
    t_start, cpu_start = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        timings[name] = round(time.perf_counter() - t0, 2)
        return time.perf_counter()

    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = train_renders(cfg)
    t = lap("render_s", t)

    vae = C.make_vae(cfg)
    vae_losses = train_vae(vae, data.images, cfg, gen)
    z = encode_latents(vae, data.images)
    stats = latent_stats(z)
    vae.register_to_config(shift_factor=stats.shift, scaling_factor=stats.scale)
    latents = (z - stats.shift) * stats.scale
    t = lap("vae_s", t)

    clip, t5 = C.make_text_encoders(cfg)
    tokenizers = C.make_tokenizers(cfg)
    transformer = C.make_transformer(cfg)
    scheduler = C.make_scheduler()
    flow_losses = train_flow(transformer, clip, t5, tokenizers, latents, data.captions, scheduler, cfg, gen)
    t = lap("flow_s", t)

    components = C.pipeline_parts(cfg, vae=vae, text_encoders=(clip, t5), tokenizers=tokenizers,
                                  transformer=transformer, scheduler=scheduler)  # fmt: skip
    pipeline_dir = save_pipeline(components, out)
    t = lap("save_s", t)
    build_s, build_cpu_s = time.perf_counter() - t_start, time.process_time() - cpu_start

    judges = fit_judges(cfg)
    t = lap("judges_s", t)
    pipe = load_pipeline(pipeline_dir)
    gen_train, images, prompts = score_generations(pipe, judges, cfg, heldout=False)
    gen_heldout, images_h, prompts_h = score_generations(pipe, judges, cfg, heldout=True)
    t = lap("generation_eval_s", t)
    # the recon ceiling: the judges on VAE round trips of real test renders
    rng = np.random.default_rng(cfg.seed + 5)
    _, test_idx = digit_split(cfg.seed, cfg.test_fraction)
    real = render(*sample_factors(test_idx, min(500, cfg.judge_test_renders), rng, heldout=None), rng)
    with torch.no_grad():
        recon = torch.cat(
            [
                (
                    (vae.decode(vae.encode(real.images[i : i + 250] * 2 - 1).latent_dist.mean).sample + 1) / 2
                ).clamp(0, 1)
                for i in range(0, len(real.images), 250)
            ]
        )
    vae_ceiling = judges.score(recon, real.factors)
    t = lap("vae_ceiling_s", t)

    report = {
        "schema": 1,
        "config": cfg.to_dict(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "build_s": round(build_s, 1),
        "build_cpu_s": round(build_cpu_s, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "total_s": round(time.perf_counter() - t_start, 1),
        "timings": timings,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "params": {
            name: C.param_count(m)
            for name, m in (
                ("transformer", transformer),
                ("vae", vae),
                ("text_encoder", clip),
                ("text_encoder_2", t5),
            )
        },
        "latent": {"shift_factor": stats.shift, "scaling_factor": stats.scale, "shape": list(z.shape[1:])},
        "final_loss": {
            "vae_recon": float(np.mean(vae_losses[-50:])),
            "flow": float(np.mean(flow_losses[-100:])),
        },
        "judge_accuracy_on_real_test_renders": judges.accuracy,
        "judge_accuracy_on_vae_round_trips": vae_ceiling,
        "generation_accuracy": {"training_combinations": gen_train, "heldout_combinations": gen_heldout},
        "chance": {k: 1.0 / v for k, v in N_VALUES.items()},
    }
    write_report(out, report, images[:32], prompts[:32], images_h[:32], prompts_h[:32])
    return BuildResult(pipeline_dir=pipeline_dir, judges=judges, report=report)
