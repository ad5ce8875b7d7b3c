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

from saekit.testbed.config import TestbedConfig
from saekit.testbed.data import N_CLASSES, unpatchify
from saekit.testbed.features import class_features
from saekit.testbed.flow import sample
from saekit.testbed.harvest import harvest_blocks
from saekit.testbed.metrics import nearest_real_distance, row_metrics, summarize
from saekit.testbed.model import NULL_CLASS
from saekit.testbed.sae_fit import fit_topk_sae
from saekit.testbed.steering import make_edit, native_strength, window_steps
from saekit.testbed.training import train_or_load


class EvalSet(NamedTuple):
    """Fixed noise and conditioning for the sweep; rows are target-major."""

    noise: Tensor
    """`[10 * P, T_img, patch^2]`."""
    source: Tensor
    """`[10 * P]` conditioning class: the null class, or another digit (never the target)."""
    target: Tensor
    """`[10 * P]` target class."""


class TestbedResult(NamedTuple):
    __test__ = False
    results: dict[str, Any]
    """Everything written to results.json."""
    images: dict[str, Tensor]
    """Config key -> `[n_strengths, 10, 8, 8]` steered images (first sample of each target)."""
    baseline: Tensor
    """`[10, 8, 8]` unsteered images from the same noise (first sample of each target)."""


def make_eval_set(cfg: TestbedConfig) -> EvalSet:
    g = torch.Generator().manual_seed(cfg.seed + 1000)
    P = cfg.eval_per_target
    target = torch.arange(N_CLASSES).repeat_interleave(P)
    if cfg.source == "null":
        source = torch.full_like(target, NULL_CLASS)
    else:
        offset = 1 + torch.arange(P).repeat(N_CLASSES) % (N_CLASSES - 1)
        source = (target + offset) % N_CLASSES
    noise = torch.randn(N_CLASSES * P, cfg.n_image_tokens, cfg.patch**2, generator=g)
    return EvalSet(noise, source, target)


def sae_cache_key(cfg: TestbedConfig) -> str:
    """Folder name for the SAEs: changes whenever the generator, the harvest or the SAE recipe does."""
    import hashlib
    import json

    fields = {
        **cfg.model_key(),
        **{
            k: getattr(cfg, k)
            for k in (
                "sample_steps",
                "guidance",
                "harvest_images",
                "tokens_per_step",
                "sae_expansion",
                "sae_k",
                "sae_steps",
                "sae_batch",
            )
        },
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def strengths_for(cfg: TestbedConfig, unit: str) -> tuple[float, ...]:
    return cfg.abs_strengths if unit == "abs" else cfg.rel_strengths


def config_key(depth: str, stream: str, method: str, unit: str, window: str) -> str:
    return f"{depth}/{stream}/{method}/{unit}/{window}"


def to_images(tokens: Tensor, cfg: TestbedConfig) -> Tensor:
    return unpatchify(tokens, cfg.patch).clamp(-1, 1)


def run_testbed(cfg: TestbedConfig, out_dir: str | Path | None = None) -> TestbedResult:
    """Run the experiment; `out_dir` caches the trained generator/classifier (results are returned)."""
    torch.set_num_threads(cfg.threads)
    timings: dict[str, float] = {}
    t0 = time.time()
    tm = train_or_load(cfg, out_dir)
    model, clf, data = tm.model, tm.classifier, tm.data
    timings["train_or_load_s"] = time.time() - t0
    real = data.train_x
    test_nn = nearest_real_distance(data.test_x, real)
    threshold = float(test_nn.quantile(0.95))

    # --- floor and ceiling on the eval noise -------------------------------------------------
    ev = make_eval_set(cfg)
    P = cfg.eval_per_target
    x_base, traj = sample(
        model, ev.noise, ev.source, steps=cfg.sample_steps, guidance=cfg.guidance, keep_trajectory=True
    )
    base_img = to_images(x_base, cfg)
    x_oracle, _ = sample(model, ev.noise, ev.target, steps=cfg.sample_steps, guidance=cfg.guidance)
    floor = summarize(row_metrics(clf, base_img, ev.target, real, base_img), threshold)
    ceiling = summarize(row_metrics(clf, to_images(x_oracle, cfg), ev.target, real, base_img), threshold)
    x_own, _ = sample(
        model, ev.noise, (ev.target + 1) % N_CLASSES, steps=cfg.sample_steps, guidance=cfg.guidance
    )
    own = summarize(
        row_metrics(clf, to_images(x_own, cfg), (ev.target + 1) % N_CLASSES, real, base_img), threshold
    )

    # --- harvest + SAEs + features ------------------------------------------------------------
    t1 = time.time()
    blocks = sorted({cfg.block_name(d) for d in cfg.depths})
    harvest = harvest_blocks(
        model, cfg, blocks, list(cfg.streams), n_images=cfg.harvest_images, seed=cfg.seed + 7
    )
    timings["harvest_s"] = time.time() - t1
    t1 = time.time()
    saes, feats, sae_info = {}, {}, {}
    sae_key = sae_cache_key(cfg)
    for (block, stream), h in harvest.items():
        sae, fvu = fit_topk_sae(
            h.acts,
            d_sae=cfg.sae_expansion * cfg.d_model,
            k=cfg.sae_k,
            steps=cfg.sae_steps,
            batch=cfg.sae_batch,
            seed=cfg.seed,
            hook_point=block,
            stream=stream,
            out=None if out_dir is None else Path(out_dir) / "saes" / sae_key / f"{block}@{stream}",
        )
        cf = class_features(sae, h.acts, h.label)
        saes[(block, stream)], feats[(block, stream)] = sae, cf
        sae_info[f"{block}@{stream}"] = {
            "rows": len(h.acts),
            "fvu": fvu,
            "mean_norm": cf.mean_norm,
            "features": cf.feature.tolist(),
            "selectivity": [round(float(v), 4) for v in cf.selectivity],
            "feature_max": [round(float(v), 4) for v in cf.feature_max],
        }
    timings["sae_s"] = time.time() - t1

    # --- sweep ---------------------------------------------------------------------------------
    t1 = time.time()
    rows: list[dict[str, Any]] = []
    images: dict[str, Tensor] = {}
    combos = list(itertools.product(cfg.depths, cfg.streams, cfg.methods, cfg.units, cfg.windows))
    traj_stack = torch.stack(traj)  # [steps, 10P, T, p2]
    targets = list(range(N_CLASSES))
    for depth, stream, method, unit, window in tqdm(combos, desc="steering sweep", disable=cfg.quiet):
        block = cfg.block_name(depth)
        sae, cf = saes[(block, stream)], feats[(block, stream)]
        grid = strengths_for(cfg, unit)
        S = len(grid)
        native = torch.tensor([[native_strength(method, unit, v, t, sae, cf) for v in grid] for t in targets])
        s_rows = native.repeat_interleave(P, dim=1)  # [10, S*P], order (strength, sample) per target
        steps = window_steps(window, cfg.sample_steps)
        k0 = min(steps)

        def expand(x: Tensor) -> Tensor:  # [10P, ...] -> [10*S*P, ...] target-major, strength, sample
            v = x.reshape(N_CLASSES, 1, P, *x.shape[1:]).expand(N_CLASSES, S, P, *x.shape[1:])
            return v.reshape(N_CLASSES * S * P, *x.shape[1:])

        edit = make_edit(
            block=block,
            stream=stream,
            method=method,
            sae=sae,
            feats=cf,
            targets=targets,
            rows_per_target=S * P,
            strengths_native=s_rows,
            steps=steps,
            steer_uncond=cfg.steer_uncond,
        )
        x, _ = sample(
            model,
            expand(ev.noise),
            expand(ev.source),
            steps=cfg.sample_steps,
            guidance=cfg.guidance,
            edit=edit,
            start_step=k0,
            x_start=expand(traj_stack[k0]),
        )
        img = to_images(x, cfg)
        tgt, base = expand(ev.target), expand(base_img)
        m = row_metrics(clf, img, tgt, real, base)
        key = config_key(depth, stream, method, unit, window)
        img_TSP = img.reshape(N_CLASSES, S, P, 8, 8)
        images[key] = img_TSP[:, :, 0].transpose(0, 1).contiguous()
        for si, value in enumerate(grid):
            sel = torch.zeros(N_CLASSES, S, P, dtype=torch.bool)
            sel[:, si] = True
            sel = sel.reshape(-1)
            sub = type(m)(*(f[sel] for f in m))
            rows.append(
                {
                    "depth": depth,
                    "block": block,
                    "stream": stream,
                    "method": method,
                    "unit": unit,
                    "window": window,
                    "strength": value,
                    "native_strength_mean": float(native[:, si].mean()),
                    **summarize(sub, threshold),
                }
            )
    timings["sweep_s"] = time.time() - t1
    timings["total_s"] = time.time() - t0

    results = {
        "schema_version": 1,
        "config": cfg.to_dict(),
        "model": {
            "classifier_test_acc": tm.classifier_test_acc,
            "final_flow_loss": tm.final_flow_loss,
            "cached": tm.cached,
            "own_class_accuracy": own["success"],
            "own_nn_dist": own["nn_dist"],
            "real_test_nn_dist_mean": float(test_nn.mean()),
            "realistic_threshold": threshold,
        },
        "floor_unsteered": floor,
        "ceiling_conditioned_on_target": ceiling,
        "saes": sae_info,
        "rows": rows,
        "best": best_rows(rows),
        "seed_configuration": seed_rows(rows),
        "timings": timings,
    }
    return TestbedResult(results, images, base_img.reshape(N_CLASSES, P, 8, 8)[:, 0].clone())


def _rank(row: dict[str, Any]) -> tuple[float, float, float]:
    return (row["faithful_success"], row["success"], -row["change"])


def best_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best configuration overall and per method/depth/stream/unit/window, by faithful success."""
    out: dict[str, Any] = {"overall": max(rows, key=_rank) if rows else None}
    for field in ("method", "depth", "stream", "unit", "window"):
        groups: dict[str, list] = {}
        for r in rows:
            groups.setdefault(r[field], []).append(r)
        out[f"by_{field}"] = {k: max(v, key=_rank) for k, v in groups.items()}
    return out


def seed_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed recipe: surgery on the late block, absolute strengths (2-92), all steps."""
    sel = [
        r
        for r in rows
        if r["method"] == "surgery" and r["depth"] == "late" and r["unit"] == "abs" and r["window"] == "all"
    ]
    return {"rows": sel, "best": max(sel, key=_rank) if sel else None}
