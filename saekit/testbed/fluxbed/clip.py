"""A small `transformers.CLIPModel` trained on the testbed's own image-caption pairs.

Why: on FLUX.1 there are no factor judges, only a CLIP judge (`saekit.sweep.clip_judge`). To know that the
CLIP judge measures what the factor judges measure, both must judge the same sweep; this CLIP is the one
that can read the testbed's 32x32 renders and word-level captions. It is an ordinary CLIP folder
(`CLIPModel.from_pretrained` + the caption tokenizer + a `CLIPImageProcessor` at 32x32), so the judge
loads it exactly as it loads openai/clip-vit-base-patch32 for a real FLUX.1.

Training: the symmetric contrastive (InfoNCE) loss on batches of renders and their captions, renders of
training digit images in training factor combinations (`train_renders`), seeded. A few minutes on one
thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from saekit.testbed.fluxbed.config import FluxbedConfig


@dataclass(frozen=True)
class ClipTrainConfig:
    """Size and schedule of the testbed CLIP."""

    n_pairs: int = 12_000
    steps: int = 1500
    batch: int = 128
    lr: float = 2e-3
    width: int = 64
    layers: int = 2
    patch: int = 4
    seed: int = 0


def make_clip(cfg: ClipTrainConfig, vocab_size: int, max_len: int):
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=vocab_size, hidden_size=cfg.width, intermediate_size=2 * cfg.width,
                num_hidden_layers=cfg.layers, num_attention_heads=4, max_position_embeddings=max_len,
                pad_token_id=0, bos_token_id=2, eos_token_id=3, projection_dim=cfg.width)  # fmt: skip
    vision = dict(image_size=32, patch_size=cfg.patch, hidden_size=cfg.width, intermediate_size=2 * cfg.width,
                  num_hidden_layers=cfg.layers, num_attention_heads=4, projection_dim=cfg.width)  # fmt: skip
    conf = CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.width)
    return CLIPModel(conf)


def train_clip(build: FluxbedConfig, out: str | Path, cfg: ClipTrainConfig = ClipTrainConfig(),
               quiet: bool = False) -> dict:  # fmt: skip
    """Train the testbed CLIP on renders and captions; save it as a CLIP folder in `out`; its figures."""
    from transformers import CLIPImageProcessor

    from saekit.atomic import write_json_atomic
    from saekit.testbed.fluxbed.build import train_renders
    from saekit.testbed.fluxbed.tokenizer import build_tokenizer, vocab

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = train_renders(FluxbedConfig(**{**build.to_dict(), "n_train_renders": cfg.n_pairs}))
    tok = build_tokenizer("clip", build.clip_max_length)
    ids = tok(data.captions, padding="max_length", max_length=build.clip_max_length, truncation=True,
              return_tensors="pt")["input_ids"]  # fmt: skip
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                              do_resize=False, do_center_crop=False)  # fmt: skip
    mean = torch.tensor(proc.image_mean)[:, None, None]
    std = torch.tensor(proc.image_std)[:, None, None]
    pix = (data.images - mean) / std
    model = make_clip(cfg, len(vocab()), build.clip_max_length)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    model.train()
    for _ in tqdm(range(cfg.steps), desc="testbed CLIP", disable=quiet):
        b = torch.randint(0, len(ids), (cfg.batch,), generator=g)
        out_ = model(input_ids=ids[b], pixel_values=pix[b], attention_mask=(ids[b] != 0).long())
        labels = torch.arange(cfg.batch)
        loss = (
            F.cross_entropy(out_.logits_per_image, labels) + F.cross_entropy(out_.logits_per_text, labels)
        ) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    proc.save_pretrained(out)
    figures = {"train_s": round(time.perf_counter() - t0, 1), "final_loss": sum(losses[-50:]) / 50,
               "first_loss": losses[0], "config": cfg.__dict__}  # fmt: skip
    write_json_atomic(out / "testbed_clip.json", figures)
    return figures


def zero_shot_accuracy(clip_folder: str | Path, build: FluxbedConfig, n: int = 600, seed: int = 1) -> dict:
    """Per factor, how often the CLIP judge reads a held-out render's factor value zero-shot: the render's
    caption with that factor set to each value in turn, the value of the best-matching caption wins. The
    factor judges' own accuracy (`fit_judges`) is the figure to compare with."""
    from saekit.sweep.clip_judge import ClipJudge
    from saekit.testbed.fluxbed.build import render_caption
    from saekit.testbed.fluxbed.render import FACTORS, digit_split, factor_values, render, sample_factors

    judge = ClipJudge(str(clip_folder))
    rng = np.random.default_rng(seed)
    _, test_idx = digit_split(build.seed, build.test_fraction)
    data = render(*sample_factors(test_idx, n, rng, heldout=None), rng)
    img = judge.image_embeds(data.images)
    truth = data.factors.numpy()
    acc = {}
    for fi, name in enumerate(FACTORS):
        k = len(factor_values(name))
        variants = []
        for row in truth:
            for v in range(k):
                r = row.copy()
                r[fi] = v
                variants.append(render_caption(r))
        txt = judge.text_embeds(variants).reshape(len(truth), k, -1)
        pred = (txt @ img[:, :, None])[..., 0].argmax(1).numpy()
        acc[name] = float((pred == truth[:, fi]).mean())
    return acc
