"""Class-to-class study: why steering a digit a into b failed, and which site/method/strength fixes it.

The same generator, classifier, realism threshold and SAE recipe as `run_testbed`; the edits are the
source-aware ones of `saekit.testbed.pair_steering`, at site sets `cond` (the adaLN conditioning
vector), `text` / `image` (that stream at every block), and unions of them. Honest protocol: every
(method, site set) gets its strength chosen on a *choose* split (its own noise seed, 5 source classes
per target = 50 generations), and is reported on a *report* split (other noise, all 90 ordered pairs),
with bootstrap intervals. Floor (unsteered, conditioned on a) and ceiling (conditioned on b) are
measured on the report split's noise.
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
from saekit.testbed.data import N_CLASSES
from saekit.testbed.flow import sample
from saekit.testbed.metrics import intervals, row_metrics, summarize
from saekit.testbed.pair_steering import make_pair_edit, site_stats

SITE_SETS = ("cond", "text", "image", "cond+text", "cond+text+image")
VARIANTS = (("dm_target", 0), ("dm_pair", 0), ("sae_pair", 4), ("sae_pair", 8), ("sae_swap", 2),
            ("sae_swap", 4), ("sae_swap", 8))  # fmt: skip
"""(method, m latents) pairs compared; m is unused by the DiffMean methods."""
STRENGTHS = (0.5, 1.0, 1.5, 2.0, 3.0)


class PairSet(NamedTuple):
    """Generations of one split: noise, source class (conditioning) and target class per row."""

    noise: Tensor
    source: Tensor
    target: Tensor


def pair_set(cfg: TestbedConfig, seed: int, offsets: list[int]) -> PairSet:
    """Every target with each source `(target + offset) % 10`; noise drawn from `seed`."""
    target = torch.arange(N_CLASSES).repeat_interleave(len(offsets))
    source = (target + torch.tensor(offsets).repeat(N_CLASSES)) % N_CLASSES
    g = torch.Generator().manual_seed(seed)
    return PairSet(torch.randn(len(target), cfg.n_image_tokens, cfg.patch**2, generator=g), source, target)


def site_keys(cfg: TestbedConfig, site_set: str) -> list[tuple[str, str]]:
    """The (block, stream) sites a site set edits."""
    keys: list[tuple[str, str]] = []
    for part in site_set.split("+"):
        keys += [("cond", "cond")] if part == "cond" else [(b, part) for b in cfg.block_names()]
    return keys


def _images(cfg: TestbedConfig, x: Tensor) -> Tensor:
    from saekit.testbed.experiment import to_images

    return to_images(x, cfg)


def evaluate(cfg, st, stats, ps: PairSet, site_set: str, method: str, m: int, strengths) -> list[dict]:
    """Success / faithful success (with intervals) of one (site set, method, m) at each strength."""
    S, N = len(strengths), len(ps.target)
    rep = lambda t: t.repeat(S, *([1] * (t.ndim - 1)))  # noqa: E731  strength-major rows
    s_rows = torch.tensor(strengths, dtype=torch.float32).repeat_interleave(N)
    sites = {k: stats[k] for k in site_keys(cfg, site_set)}
    edit = make_pair_edit(sites, method, rep(ps.source), rep(ps.target), s_rows,
                          set(range(cfg.sample_steps)), m=max(m, 1))  # fmt: skip
    x, _ = sample(st.model, rep(ps.noise), rep(ps.source), steps=cfg.sample_steps, guidance=cfg.guidance,
                  edit=edit)  # fmt: skip
    base, _ = sample(st.model, ps.noise, ps.source, steps=cfg.sample_steps, guidance=cfg.guidance)
    met = row_metrics(st.clf, _images(cfg, x), rep(ps.target), st.real, rep(_images(cfg, base)))
    rows = []
    for i, s in enumerate(strengths):
        sub = type(met)(*(f[i * N : (i + 1) * N] for f in met))
        scores = {**summarize(sub, st.threshold), **intervals(sub, st.threshold, seed=cfg.seed)}
        rows.append({"site_set": site_set, "method": method, "m": m, "strength": s, **scores})
    return rows


def _rank(r: dict) -> tuple[float, float]:
    return (r["faithful_success"], r["success"])


def _fit_stats(cfg: TestbedConfig, st, out_dir) -> tuple[dict, dict]:
    """SAE + class statistics for the cond site and both streams of every block (SAEs cached)."""
    from saekit.testbed.experiment import sae_cache_key
    from saekit.testbed.harvest import harvest_blocks
    from saekit.testbed.sae_fit import fit_topk_sae

    blocks = [*cfg.block_names(), "cond"]
    harvest = harvest_blocks(st.model, cfg, blocks, ["cond", "image", "text"], n_images=cfg.harvest_images,
                             seed=cfg.seed + 7)  # fmt: skip
    key, stats, fvus = sae_cache_key(cfg), {}, {}
    for site in sorted(site_keys(cfg, "cond+text+image")):
        h = harvest[site]
        sae, fvu = fit_topk_sae(
            h.acts, d_sae=cfg.sae_expansion * cfg.d_model, k=cfg.sae_k, steps=cfg.sae_steps,
            batch=cfg.sae_batch, seed=cfg.seed, hook_point=site[0], stream=site[1],
            out=None if out_dir is None else Path(out_dir) / "saes" / key / f"{site[0]}@{site[1]}",
        )  # fmt: skip
        stats[site], fvus[f"{site[0]}@{site[1]}"] = site_stats(sae, h.acts, h.label), fvu
    return stats, fvus


def run_c2c_study(cfg: TestbedConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Choose each (site set, method, m)'s strength on the choose split, report on the report split."""
    from saekit.testbed.experiment import _setup

    torch.set_num_threads(cfg.threads)
    timings: dict[str, float] = {}
    t0 = time.time()
    st = _setup(cfg, out_dir, timings)
    stats, fvus = _fit_stats(cfg, st, out_dir)
    choose = pair_set(cfg, cfg.seed + 1000, [1, 2, 3, 4, 5])
    report = pair_set(cfg, cfg.seed + 3000, list(range(1, N_CLASSES)))
    grid = list(itertools.product(SITE_SETS, VARIANTS))
    chosen, reported = [], []
    for site_set, (method, m) in tqdm(grid, desc="c2c study", disable=cfg.quiet):
        rows = evaluate(cfg, st, stats, choose, site_set, method, m, STRENGTHS)
        best = max(rows, key=_rank)
        chosen.append({"train_rows": rows, "best": best})
        reported += evaluate(cfg, st, stats, report, site_set, method, m, [best["strength"]])
    return {
        "schema_version": 1,
        "config": cfg.to_dict(),
        "splits": {
            "choose": "noise seed+1000, 5 sources per target (50)",
            "report": "noise seed+3000, all 90 ordered pairs",
        },  # fmt: skip
        "realistic_threshold": st.threshold,
        "floor_ceiling": _floor_ceiling(cfg, st, report),
        "sae_fvu": fvus,
        "choose": chosen,
        "report": sorted(reported, key=_rank, reverse=True),
        "seconds": time.time() - t0,
    }


def _floor_ceiling(cfg: TestbedConfig, st, ps: PairSet) -> dict[str, dict]:
    out = {}
    for name, y in (("unsteered (conditioned on a)", ps.source), ("conditioned on b (ceiling)", ps.target)):
        x, _ = sample(st.model, ps.noise, y, steps=cfg.sample_steps, guidance=cfg.guidance)
        img = _images(cfg, x)
        met = row_metrics(st.clf, img, ps.target, st.real, img)
        out[name] = {**summarize(met, st.threshold), **intervals(met, st.threshold, seed=cfg.seed)}
    return out


def _ci(r: dict, key: str) -> str:
    lo, hi = r[f"{key}_ci"]
    return f"{r[key]:.2f} [{lo:.2f}, {hi:.2f}]"


def format_c2c(res: dict) -> str:
    """Markdown: the report-split table (strength chosen on the choose split), floor and ceiling."""
    lines = [
        "| site set | method | m | strength (chosen) | success [95% CI] | faithful [95% CI] | nn-dist | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["report"]:
        m = r["m"] if r["method"].startswith("sae") else "-"
        lines.append(f"| {r['site_set']} | {r['method']} | {m} | {r['strength']:g} | {_ci(r, 'success')} | "
                     f"{_ci(r, 'faithful_success')} | {r['nn_dist']:.2f} | {r['n']} |")  # fmt: skip
    for name, r in res["floor_ceiling"].items():
        lines.append(f"| - | {name} | - | - | {_ci(r, 'success')} | {_ci(r, 'faithful_success')} | "
                     f"{r['nn_dist']:.2f} | {r['n']} |")  # fmt: skip
    return "\n".join(lines)
