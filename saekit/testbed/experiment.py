"""The whole testbed: train -> harvest -> SAEs -> class features -> steering sweep -> numbers.

Every configuration steers generations toward a target class from the same noise, conditioned either
on the null class (unconditional; `source="null"`) or on a *different* digit (`source="other"`), so
success is never the conditioning doing the work. The unsteered success rate is the floor (about
chance for null), conditioning directly on the target the ceiling.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm

from saekit.steps import steps_or_all
from saekit.testbed.best import best_rows, seed_rows
from saekit.testbed.config import TestbedConfig
from saekit.testbed.data import N_CLASSES
from saekit.testbed.evalset import (  # noqa: F401  (re-exported: report.py and c2c read them here)
    EvalSet,
    config_key,
    expand_rows,
    make_eval_set,
    sae_cache_key,
    strengths_for,
    to_images,
)
from saekit.testbed.features import class_features
from saekit.testbed.flow import sample
from saekit.testbed.harvest import harvest_blocks
from saekit.testbed.metrics import intervals, nearest_real_distance, row_metrics, summarize
from saekit.testbed.sae_fit import fit_topk_sae
from saekit.testbed.steering import make_site_edit, native_strength
from saekit.testbed.training import train_or_load


class TestbedResult(NamedTuple):
    __test__ = False
    results: dict[str, Any]
    """Everything written to results.json."""
    images: dict[str, Tensor]
    """Config key -> `[n_strengths, 10, 8, 8]` steered images (first sample of each target)."""
    baseline: Tensor
    """`[10, 8, 8]` unsteered images from the same noise (first sample of each target)."""


class Setup(NamedTuple):
    """The trained generator, classifier and real digits every scenario is judged against."""

    model: Any
    clf: Any
    tm: Any
    real: Tensor
    test_nn: Tensor
    threshold: float


def _setup(cfg: TestbedConfig, out_dir, timings: dict[str, float]) -> Setup:
    t0 = time.time()
    tm = train_or_load(cfg, out_dir)
    timings["train_or_load_s"] = time.time() - t0
    real = tm.data.train_x
    test_nn = nearest_real_distance(tm.data.test_x, real)
    return Setup(tm.model, tm.classifier, tm, real, test_nn, float(test_nn.quantile(0.95)))


def needed_sites(cfg: TestbedConfig) -> list[tuple[str, str]]:
    """Every (block, stream) some configuration steers (each gets an SAE)."""
    sites = {site for depth in cfg.depths for stream in cfg.streams for site in cfg.sites(depth, stream)}
    return sorted(sites)


def _fit_saes(cfg: TestbedConfig, st: Setup, out_dir, timings) -> tuple[dict, dict, dict]:
    t1 = time.time()
    sites = needed_sites(cfg)
    blocks = sorted({b for b, _ in sites})
    streams = sorted({s for _, s in sites})
    harvest = harvest_blocks(st.model, cfg, blocks, streams, n_images=cfg.harvest_images, seed=cfg.seed + 7)
    timings["harvest_s"] = time.time() - t1
    t1 = time.time()
    saes, feats, info = {}, {}, {}
    key = sae_cache_key(cfg)
    for block, stream in sites:
        h = harvest[(block, stream)]
        sae, fvu = fit_topk_sae(
            h.acts, d_sae=cfg.sae_expansion * cfg.d_model, k=cfg.sae_k, steps=cfg.sae_steps,
            batch=cfg.sae_batch, seed=cfg.seed, hook_point=block, stream=stream,
            out=None if out_dir is None else Path(out_dir) / "saes" / key / f"{block}@{stream}",
        )  # fmt: skip
        cf = class_features(sae, h.acts, h.label)
        saes[(block, stream)], feats[(block, stream)] = sae, cf
        info[f"{block}@{stream}"] = {
            "rows": len(h.acts),
            "fvu": fvu,
            "mean_norm": cf.mean_norm,
            "features": cf.feature.tolist(),
            "selectivity": [round(float(v), 4) for v in cf.selectivity],
            "feature_max": [round(float(v), 4) for v in cf.feature_max],
        }
    timings["sae_s"] = time.time() - t1
    return saes, feats, info


def _reference(cfg: TestbedConfig, st: Setup, ev: EvalSet) -> tuple[Tensor, list, dict, dict]:
    """Unsteered images (+ trajectory), floor and ceiling on the eval noise."""
    x_base, traj = sample(
        st.model, ev.noise, ev.source, steps=cfg.sample_steps, guidance=cfg.guidance, keep_trajectory=True
    )
    base_img = to_images(x_base, cfg)
    x_oracle, _ = sample(st.model, ev.noise, ev.target, steps=cfg.sample_steps, guidance=cfg.guidance)
    floor = summarize(row_metrics(st.clf, base_img, ev.target, st.real, base_img), st.threshold)
    oracle = to_images(x_oracle, cfg)
    ceiling = summarize(row_metrics(st.clf, oracle, ev.target, st.real, base_img), st.threshold)
    return base_img, traj, floor, ceiling


def _run_combo(cfg, st, saes, feats, ev, base_img, traj_stack, combo) -> tuple[list[dict], Tensor]:
    """One (depth, stream, method, unit, window): every strength x target x sample in one batch."""
    depth, stream, method, unit, window = combo
    P, grid, targets = cfg.eval_per_target, strengths_for(cfg, unit), list(range(N_CLASSES))
    S = len(grid)
    sites = {}
    for site in cfg.sites(depth, stream):
        sae, cf = saes[site], feats[site]
        native = torch.tensor([[native_strength(method, unit, v, t, sae, cf) for v in grid] for t in targets])
        sites[site] = (sae, cf, native.repeat_interleave(P, dim=1))
    steps = steps_or_all(window, cfg.sample_steps)
    k0 = min(steps)
    edit = make_site_edit(sites, method=method, targets=targets, rows_per_target=S * P, steps=steps,
                          steer_uncond=cfg.steer_uncond)  # fmt: skip
    x, _ = sample(
        st.model, expand_rows(ev.noise, S, P), expand_rows(ev.source, S, P), steps=cfg.sample_steps,
        guidance=cfg.guidance, edit=edit, start_step=k0, x_start=expand_rows(traj_stack[k0], S, P),
    )  # fmt: skip
    img = to_images(x, cfg)
    m = row_metrics(st.clf, img, expand_rows(ev.target, S, P), st.real, expand_rows(base_img, S, P))
    first_native = next(iter(sites.values()))[2]
    rows = []
    for si, value in enumerate(grid):
        sel = torch.zeros(N_CLASSES, S, P, dtype=torch.bool)
        sel[:, si] = True
        sub = type(m)(*(f[sel.reshape(-1)] for f in m))
        rows.append({
            "depth": depth, "block": cfg.block_name(depth), "stream": "cond" if depth == "cond" else stream,
            "method": method, "unit": unit, "window": window, "strength": value,
            "native_strength_mean": float(first_native[:, si * P].mean()),
            **summarize(sub, st.threshold), **intervals(sub, st.threshold, seed=cfg.seed),
        })  # fmt: skip
    return rows, img.reshape(N_CLASSES, S, P, 8, 8)[:, :, 0].transpose(0, 1).contiguous()


def combos_of(cfg: TestbedConfig) -> list[tuple[str, str, str, str, str]]:
    """Sweep configurations; the conditioning site has one stream, so `cond` appears once."""
    out = []
    for depth, stream, method, unit, window in itertools.product(
        cfg.depths, cfg.streams, cfg.methods, cfg.units, cfg.windows
    ):
        if depth == "cond" and stream != cfg.streams[0]:
            continue
        out.append((depth, stream, method, unit, window))
    return out


def _scenario(cfg: TestbedConfig, st: Setup, saes, feats) -> tuple[dict, dict, Tensor]:
    """Floor, ceiling and every steered configuration for one scenario (`cfg.source`)."""
    ev = make_eval_set(cfg)
    base_img, traj, floor, ceiling = _reference(cfg, st, ev)
    traj_stack = torch.stack(traj)  # [steps, 10P, T, p2]
    rows: list[dict[str, Any]] = []
    images: dict[str, Tensor] = {}
    for combo in tqdm(combos_of(cfg), desc=f"steering sweep ({cfg.source})", disable=cfg.quiet):
        r, img = _run_combo(cfg, st, saes, feats, ev, base_img, traj_stack, combo)
        rows += r
        images[config_key(*combo)] = img
    res = {
        "source": cfg.source,
        "n_per_configuration": N_CLASSES * cfg.eval_per_target,
        "floor_unsteered": floor,
        "ceiling_conditioned_on_target": ceiling,
        "rows": rows,
        "best": best_rows(rows),
        "seed_configuration": seed_rows(rows),
    }
    return res, images, base_img.reshape(N_CLASSES, cfg.eval_per_target, 8, 8)[:, 0].clone()


def run_testbed(cfg: TestbedConfig, out_dir: str | Path | None = None) -> TestbedResult:
    """Run the experiment; `out_dir` caches the trained generator/classifier (results are returned).

    Every scenario in `cfg.all_scenarios()` is measured on the same generator and SAEs; the first
    one's numbers are also the top-level keys of the results (the layout older reports read).
    """
    torch.set_num_threads(cfg.threads)
    timings: dict[str, float] = {}
    t0 = time.time()
    st = _setup(cfg, out_dir, timings)
    ev = make_eval_set(cfg)
    x_own, _ = sample(st.model, ev.noise, (ev.target + 1) % N_CLASSES, steps=cfg.sample_steps,
                      guidance=cfg.guidance)  # fmt: skip
    own_img = to_images(x_own, cfg)
    own = summarize(row_metrics(st.clf, own_img, (ev.target + 1) % N_CLASSES, st.real, own_img), st.threshold)
    saes, feats, sae_info = _fit_saes(cfg, st, out_dir, timings)
    t1 = time.time()
    scenarios, images, baseline = {}, {}, None
    for src in cfg.all_scenarios():
        res, imgs, base = _scenario(cfg.replace(source=src), st, saes, feats)
        scenarios[src] = res
        if baseline is None:
            images, baseline = imgs, base
    timings["sweep_s"] = time.time() - t1
    timings["total_s"] = time.time() - t0
    first = scenarios[cfg.all_scenarios()[0]]
    results = {
        "schema_version": 2,
        "config": cfg.to_dict(),
        "model": {
            "classifier_test_acc": st.tm.classifier_test_acc,
            "final_flow_loss": st.tm.final_flow_loss,
            "cached": st.tm.cached,
            "own_class_accuracy": own["success"],
            "own_nn_dist": own["nn_dist"],
            "real_test_nn_dist_mean": float(st.test_nn.mean()),
            "realistic_threshold": st.threshold,
        },
        **{k: v for k, v in first.items() if k != "source"},
        "scenarios": scenarios,
        "saes": sae_info,
        "timings": timings,
    }
    return TestbedResult(results, images, baseline)
