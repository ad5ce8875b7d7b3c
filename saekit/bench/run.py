"""`run_bench`: load the model once, do the SAE-independent passes once, score every SAE, write the report."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from time import perf_counter
from typing import Any

import torch

from saekit.bench.config import BenchConfig
from saekit.errors import SaekitError


def sae_names(paths: tuple[str, ...]) -> list[str]:
    """Short, distinct names: each path's shortest tail (folder or file name, then its parents) that no
    other path ends with."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]  # a symlink keeps its own name
    names = []
    for i, p in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i]
        depth = 1
        while depth < len(p) and any(q[-depth:] == p[-depth:] for q in others):
            depth += 1
        names.append("/".join(p[-depth:]))
    return names


def _model_and_hook(cfg: BenchConfig, entries: list[tuple[str, str, Any]]) -> tuple[str, str]:
    """The model and hook point every SAE reads; SAEs from different hooks or widths are refused."""
    widths = {sae.d_in for _, _, sae in entries}
    if len(widths) > 1:
        found = ", ".join(f"{n}: d_in={s.d_in}" for n, _, s in entries)
        raise SaekitError(
            f"bench: the SAEs read activations of different widths ({found}); bench one hook at a time"
        )
    result = []
    for what, given in (("model", cfg.model), ("hook_point", cfg.hook)):
        if given:
            result.append(given)
            continue
        named = {n: getattr(s.cfg.provenance, what) for n, _, s in entries}
        values = set(named.values())
        if len(values) != 1 or None in values:
            listing = ", ".join(f"{n}: {v!r}" for n, v in named.items())
            flag = "--model" if what == "model" else "--hook"
            raise SaekitError(
                f"bench: the SAEs' provenance does not name one {what} ({listing}); pass {flag}, and bench "
                "SAEs of different hook points separately"
            )
        result.append(values.pop())
    return result[0], result[1]


def run_bench(cfg: BenchConfig, *, loaded=None) -> dict[str, Any]:
    """Score every SAE of `cfg.sae`; writes bench.json, bench.md and bench.png into `cfg.out` and returns
    the report (figures as `Interval`s). `loaded`: the model, already loaded (else the one the SAEs name)."""
    import saekit
    from saekit.data.harvest.lm import LMHarvestConfig
    from saekit.device import resolve_device
    from saekit.hooks import HookPoint, resolve_module

    t_start = perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    entries = [(n, p, saekit.load(p).eval().to(device)) for n, p in zip(sae_names(cfg.sae), cfg.sae)]
    model_name, hook = _model_and_hook(cfg, entries)
    t = perf_counter()
    if loaded is None:
        from saekit.models import load_model, resolve_dtype

        loaded = load_model(model_name, dtype=resolve_dtype(cfg.dtype, device), quiet=cfg.quiet)
    loaded.model.to(device)
    resolve_module(loaded.model, HookPoint.parse(hook))
    model_load = perf_counter() - t
    ratio = LMHarvestConfig.max_norm_ratio
    shared, per_sae = _shared_passes(cfg, loaded, hook, ratio)
    rows = []
    for name, path, sae in entries:
        if not cfg.quiet:
            print(f"bench: {name} ({sae.arch}, d_sae={sae.d_sae})", flush=True)
        rows.append(_score(cfg, name, path, sae, loaded, hook, shared, per_sae))
    report = {
        "model": model_name,
        "hook_point": hook,
        "d_in": entries[0][2].d_in,
        "dtype": loaded.dtype,
        "device": str(device),
        "metrics": list(cfg.metrics),
        "config": dataclasses.asdict(cfg),
        "saes": rows,
        "baselines": shared["baselines"],
        "seed_groups": _seed_groups(entries, rows) if cfg.group_seeds else [],
    }
    if "core" in shared:
        ci = shared["core"]
        report["core_sample"] = {
            "documents": len(ci.context.unique()),
            "tokens": len(ci.context),
            "norm_outliers": int((~ci.inlier).sum()),
            "store_rows": 0 if ci.firing_rows is None else len(ci.firing_rows),
        }
    report["timings_s"] = _timings(cfg, shared["seconds"], per_sae, model_load, perf_counter() - t_start)
    _write(cfg, report)
    return report


def _shared_passes(cfg: BenchConfig, lm, hook: str, ratio: float) -> tuple[dict, dict]:
    """The SAE-independent inputs of each metric family, the raw-activation baselines, and their times."""
    from saekit.bench import absorption, core, probing

    shared: dict[str, Any] = {"seconds": {}, "baselines": {}}
    per_sae: dict[str, list[float]] = {m: [] for m in cfg.metrics}
    if "core" in cfg.metrics:
        t = perf_counter()
        shared["core"] = core.core_inputs(lm, hook, cfg.core, max_norm_ratio=ratio, quiet=cfg.quiet)
        shared["seconds"]["core"] = perf_counter() - t
    if "probing" in cfg.metrics:
        t = perf_counter()
        data = probing.probe_data(lm, hook, cfg.probing, max_norm_ratio=ratio, quiet=cfg.quiet)
        correct = probing.probe_accuracies(data.raw, data, cfg.probing.ks, cfg.probing.c, full=True)
        raw = probing.summarise(correct, data, "raw", n_boot=cfg.n_boot, seed=cfg.seed)
        figures = dict(raw["mean"]) | {f"probe_k{k}": raw["mean"][f"raw_k{k}"] for k in cfg.probing.ks}
        shared["baselines"]["raw_activations"] = {"figures": figures, "probing_tasks": raw["tasks"]}
        shared["probing"] = data
        shared["seconds"]["probing"] = perf_counter() - t
    if "absorption" in cfg.metrics:
        t = perf_counter()
        probe = absorption.letter_probe(lm, hook, cfg.absorption, quiet=cfg.quiet)
        shared["baselines"]["letter_probe_accuracy"] = absorption.probe_accuracy(
            probe, n_boot=cfg.n_boot, seed=cfg.seed
        )
        shared["absorption"] = probe
        shared["seconds"]["absorption"] = perf_counter() - t
    return shared, per_sae


def _score(cfg: BenchConfig, name: str, path: str, sae, lm, hook: str, shared: dict, per_sae: dict) -> dict:
    """Every metric family of one SAE; its seconds are appended to `per_sae`."""
    from saekit.bench import absorption, core, probing

    row: dict[str, Any] = {
        "name": name,
        "path": str(path),
        "arch": sae.arch,
        "d_sae": sae.d_sae,
        "k": sae.cfg.k,
        "figures": {},
        "timings_s": {},
    }
    boot = {"n_boot": cfg.n_boot, "seed": cfg.seed}
    for metric in cfg.metrics:
        t = perf_counter()
        if metric == "core":
            row["figures"] |= core.core_metrics(
                sae, lm, hook, shared["core"], cfg.core, quiet=cfg.quiet, **boot
            )
        elif metric == "probing":
            data = shared["probing"]
            correct = probing.probe_accuracies(
                probing.pooled_latents(sae, data), data, cfg.probing.ks, cfg.probing.c
            )
            res = probing.summarise(correct, data, "sae", **boot)
            row["figures"] |= {f"probe_k{k}": res["mean"][f"sae_k{k}"] for k in cfg.probing.ks}
            row["probing_tasks"] = res["tasks"]
        else:
            res = absorption.absorption_metrics(sae, shared["absorption"], cfg.absorption, **boot)
            row["absorption_letters"] = res.pop("letters")
            row["figures"] |= res
        row["timings_s"][metric] = perf_counter() - t
        per_sae[metric].append(row["timings_s"][metric])
    return row


def _seed_groups(entries, rows: list[dict]) -> list[dict]:
    from saekit.bench.bootstrap import Interval
    from saekit.bench.seeds import config_key, group_spread, seed_groups

    out = []
    for members in seed_groups([config_key(sae, path) for _, path, sae in entries]):
        figs = [
            {k: v.value for k, v in rows[i]["figures"].items() if isinstance(v, Interval)} for i in members
        ]
        half = {}
        for k in figs[0]:
            widths = [(rows[i]["figures"][k].hi - rows[i]["figures"][k].lo) / 2 for i in members]
            half[k] = sum(widths) / len(widths)
        out.append(
            {"members": [rows[i]["name"] for i in members], "spread": group_spread(figs), "half_width": half}
        )
    return out


def _timings(cfg: BenchConfig, shared: dict, per_sae: dict, model_load: float, total: float) -> dict:
    per_metric = {}
    for m in cfg.metrics:
        times = per_sae[m]
        per_metric[m] = {
            "shared": shared.get(m, 0.0),
            "per_sae": sum(times) / max(len(times), 1),
            "total": shared.get(m, 0.0) + sum(times),
        }
    return {"model_load": model_load, "per_metric": per_metric, "total": total}


def _write(cfg: BenchConfig, report: dict) -> None:
    from saekit.atomic import write_json_atomic, write_text_atomic
    from saekit.bench.plot import bench_png
    from saekit.bench.report import jsonable, markdown

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = {
        "json": str(out / "bench.json"),
        "markdown": str(out / "bench.md"),
        "png": str(out / "bench.png"),
    }
    bench_png(out / "bench.png", report)
    write_text_atomic(out / "bench.md", markdown(report))
    write_json_atomic(out / "bench.json", jsonable(report))
