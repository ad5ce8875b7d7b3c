"""SAE steering against a LoRA, on the same factor-sweep task: "can SAE be the new LoRA?", measured.

`saekit.sweep.image_factors` runs the SAE, DiffMean and prompting arms for each target value of a factor.
This module runs exactly that, in the same process, and adds one more arm per target: the factor LoRA
trained for that value (`saekit testbed lora`, `saekit.testbed.fluxbed.lora`), loaded with diffusers'
`pipe.load_lora_weights` and applied with the LoRA scale `s` (`joint_attention_kwargs={"scale": s}`) as
its strength. Everything else is shared, so the numbers pair image by image:

- the prompts (the selection / train / test split per target, asking for another value), the seeds;
- the judging: faithful success = the judge reads the target and the `preserve` factors read as on the
  unsteered image of the same seed;
- the protocol: the scale is chosen on the train prompts (ties to the smaller scale), reported on test;
- bootstrap intervals over test images, and paired differences LoRA - SAE, LoRA - DiffMean.

Image quality is the factor judges' confidence (mean probability of their answer over the judged factors)
on the contact-sheet images of every arm (the first 8 test prompts per target). Cost: one SAE serves every
concept, one LoRA serves one; both are read from their folders (parameters, bytes, LoRA train seconds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from torch import Tensor

from saekit.errors import SteeringError
from saekit.sweep.image_factors import FactorSweepConfig, factor_sweep_configs

ARM_ORDER = ("unsteered", "prompting", "sae", "diffmean", "lora")
"""Row order of the contact sheet and the tables."""
LORA_COST_KEYS = (
    "value",
    "trainable_params",
    "file_bytes",
    "train_s",
    "cpu_s",
    "threads",
    "load_average_1min_at_end",
)


@dataclass(frozen=True)
class LoraSweepConfig:
    """The factor sweep (its own flags) plus a LoRA arm: one LoRA folder per target value."""

    sweep: Annotated[FactorSweepConfig, tyro.conf.OmitArgPrefixes]
    """The factor sweep: model, SAE, factor, targets, strengths, prompt split, judges, out."""
    loras: tuple[str, ...] = ()
    """Factor LoRA folders (`saekit testbed lora`), one per target; each folder's lora_info.json says its
    factor and value. Targets default to the LoRAs' values, in the order given."""
    lora_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    """LoRA scales tried on the train prompts (1 = as trained; 0 = the base pipeline)."""

    def __post_init__(self) -> None:
        if not self.loras:
            raise SteeringError("--loras is empty: give one factor LoRA folder per target value")
        if not self.lora_scales:
            raise SteeringError("--lora-scales is empty")


@dataclass
class LoraArm:
    """One target's LoRA arm: train scores per scale, the chosen scale, test outcomes per image."""

    target: str
    folder: str
    train_grid: dict[float, float] = field(default_factory=dict)
    scale: float = 1.0
    test: np.ndarray | None = None
    test_success: np.ndarray | None = None
    changed: dict[str, float] = field(default_factory=dict)
    """Per preserved factor: the fraction of test images whose judged value differs from the unsteered."""


def loras_by_value(cfg: LoraSweepConfig) -> dict[str, str]:
    """{value: folder} of the LoRAs, checked: each is for the sweep's factor, one per value."""
    from saekit.testbed.fluxbed.lora import read_lora_info

    out: dict[str, str] = {}
    for folder in cfg.loras:
        info = read_lora_info(folder)
        if info["factor"] != cfg.sweep.factor:
            raise SteeringError(
                f"the LoRA in {folder} steers {info['factor']}={info['value']}, not {cfg.sweep.factor}; "
                f"pass LoRAs trained with --factor {cfg.sweep.factor}"
            )
        if info["value"] in out:
            raise SteeringError(f"two LoRAs for {info['value']}: {out[info['value']]} and {folder}")
        out[info["value"]] = folder
    return out


def choose_scale(train_grid: dict[float, float]) -> float:
    """The scale with the most faithful successes on train; ties go to the smaller scale."""
    return max(train_grid, key=lambda s: (train_grid[s], -s))


def lora_images(pipe, folder: str, prompts: list[str], scale: float, sweep: FactorSweepConfig) -> Tensor:
    """Images for `prompts` with the LoRA in `folder` at `scale`, noise seeded as every other arm's; the
    pipeline is left without the LoRA afterwards."""
    from saekit.testbed.fluxbed.build import generate
    from saekit.testbed.fluxbed.lora import load_factor_lora

    load_factor_lora(pipe, folder, adapter_name="factor_lora")
    try:
        return generate(pipe, prompts, sweep.seed, sweep.num_inference_steps, sweep.batch,
                        joint_attention_kwargs={"scale": float(scale)})  # fmt: skip
    finally:
        pipe.unload_lora_weights()


def _lora_arm(r, sweep: FactorSweepConfig, folder: str, scales, fi: int, tv: int, tname: str,
              keep: list[int], ti: int, sheet: list) -> LoraArm:  # fmt: skip
    """The LoRA arm on the target's train prompts (every scale) and test prompts (the chosen scale),
    with the same prompts, seeds and unsteered references as `image_factors._one_target`."""
    from saekit.sweep.image_factors import _captions, _prompt_sets, faithful
    from saekit.testbed.fluxbed.render import FACTORS

    _, train, test = _prompt_sets(sweep, r.build, fi, tv, sweep.seed + 101 * ti)
    arm = LoraArm(target=tname, folder=folder)
    for split, rows in (("train", train), ("test", test)):
        prompts = _captions(rows)
        base = r.judge(r.generate(prompts))
        for s in scales if split == "train" else [arm.scale]:
            img = lora_images(r.pipe, folder, prompts, s, sweep)
            pred = r.judge(img)
            ok = faithful(pred, base, fi, tv, keep)
            if split == "train":
                arm.train_grid[float(s)] = float(ok.mean())
            else:
                arm.test, arm.test_success = ok, pred[:, fi] == tv
                arm.changed = {FACTORS[j]: float((pred[:, j] != base[:, j]).mean()) for j in keep}
                sheet.append(("lora", tname, img[:8]))
        if split == "train":
            arm.scale = choose_scale(arm.train_grid)
    return arm


def judge_confidence(judges, images: Tensor, columns: list[int]) -> np.ndarray:
    """Per image: the judges' mean probability of their answer over `columns` (FACTORS indices)."""
    _, conf = judges.predict(images)
    return conf[:, columns].mean(1)


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    from saekit.sweep.image_factors import bootstrap_mean

    d = a.astype(float) - b.astype(float)
    return {"difference": float(d.mean()), "ci": bootstrap_mean(d)}


def sae_cost(folder: str) -> dict:
    """Parameters and bytes of an SAE folder's weights (one SAE serves every concept)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    params = 0
    for f in files:
        with safe_open(str(f), "pt") as st:
            params += sum(int(np.prod(st.get_slice(k).get_shape())) for k in st.keys())
    return {"params": params, "file_bytes": sum(f.stat().st_size for f in files)}


def run_lora_sweep(cfg: LoraSweepConfig) -> dict:
    """The factor sweep with the LoRA arm (module docstring); writes results.json, table.md, contact.png
    and contact.json into `cfg.sweep.out`, and returns the results."""
    import dataclasses

    from tqdm import tqdm

    from saekit.sweep.image_factors import _factor_values, _one_target, _Runner, _summarise, bootstrap_mean
    from saekit.testbed.fluxbed.lora import read_lora_info
    from saekit.testbed.fluxbed.render import FACTORS

    by_value = loras_by_value(cfg)
    sweep = cfg.sweep if cfg.sweep.targets else dataclasses.replace(cfg.sweep, targets=tuple(by_value))
    values, targets = _factor_values(sweep)
    missing = [t for t in targets if t not in by_value]
    if missing:
        raise SteeringError(
            f"no LoRA for {sweep.factor}={missing[0]}; train one (saekit testbed lora --factor "
            f"{sweep.factor} --value '{missing[0]}') or leave it out of --targets"
        )
    torch.manual_seed(sweep.seed)
    fi = FACTORS.index(sweep.factor)
    keep = [FACTORS.index(p) for p in sweep.preserve if p != sweep.factor]
    r = _Runner(sweep)
    configs = factor_sweep_configs(sweep)
    per_target, rows_test, arms = [], {}, []
    sheet: list[tuple[str, str, Tensor]] = []
    for ti, tname in enumerate(tqdm(targets, desc=f"{sweep.factor} targets", disable=sweep.quiet)):
        tv = values.index(tname)
        entry, test_rows = _one_target(r, configs, fi, tv, tname, keep, ti, sheet)
        per_target.append(entry)
        rows_test[tname] = test_rows
        arms.append(_lora_arm(r, sweep, by_value[tname], cfg.lora_scales, fi, tv, tname, keep, ti, sheet))
    result = _summarise(sweep, per_target, rows_test)
    lora = np.concatenate([a.test for a in arms]).astype(float)
    pooled = {k: np.concatenate([rows_test[t][k] for t in targets]) for k in ("sae", "diffmean", "prompting")}
    result["config"] = {**result["config"], "loras": list(cfg.loras), "lora_scales": list(cfg.lora_scales)}
    result["test"]["lora"] = {
        "faithful_success": float(lora.mean()), "ci": bootstrap_mean(lora), "n": int(len(lora)),
        "success": float(np.concatenate([a.test_success for a in arms]).mean()),
    }  # fmt: skip
    for other in ("sae", "diffmean", "prompting"):
        result["test"][f"lora_minus_{other}"] = paired(lora, pooled[other])
    result["lora_per_target"] = [
        {"target": a.target, "folder": a.folder, "scale": a.scale, "train": a.train_grid[a.scale],
         "train_grid": {f"{s:g}": v for s, v in a.train_grid.items()}, "test": float(a.test.mean()),
         "test_success": float(a.test_success.mean()), "changed_on_test": a.changed}
        for a in arms
    ]  # fmt: skip
    judged = [fi, *keep]
    conf: dict[str, list[np.ndarray]] = {}
    for arm, _, im in sheet:
        conf.setdefault(arm, []).append(judge_confidence(r.judges, im, judged))
    result["confidence_on_sheet"] = {arm: float(np.concatenate(conf[arm]).mean()) for arm in conf}
    infos = [read_lora_info(by_value[t]) for t in targets]
    result["cost"] = {
        "sae": sae_cost(sweep.sae),
        "lora": [{k: i[k] for k in LORA_COST_KEYS} for i in infos],
    }
    write_lora_sweep(Path(sweep.out), result, sheet)
    return result


def write_lora_sweep(out: Path, result: dict, sheet: list[tuple[str, str, Tensor]]) -> None:
    """results.json, table.md, and contact.png: per target, rows of the first 8 test prompts in ARM_ORDER
    (contact.json lists the rows)."""
    from saekit.atomic import write_text_atomic
    from saekit.sweep.image_factors import write_contact_sheet

    out.mkdir(parents=True, exist_ok=True)
    write_contact_sheet(out, sheet, ARM_ORDER)
    write_text_atomic(out / "results.json", json.dumps(result, indent=2, default=_jsonable) + "\n")
    write_text_atomic(out / "table.md", lora_table_markdown(result))


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def _ci(row: dict) -> str:
    lo, hi = row["ci"]
    return f"{row['faithful_success']:.2f} [{lo:.2f}, {hi:.2f}]"


def _diff(d: dict) -> str:
    return f"{d['difference']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]"


def lora_table_markdown(result: dict) -> str:
    """The test-split table: every arm with intervals, the paired differences, per target, and cost."""
    cfg, t = result["config"], result["test"]
    conf = result.get("confidence_on_sheet", {})
    names = {"sae": "SAE (best method, strength)", "diffmean": "DiffMean", "lora": "LoRA (best scale)",
             "prompting": "prompting (caption asks for the target)", "unsteered": "unsteered"}  # fmt: skip
    lines = [
        f"# `{cfg['factor']}`: SAE vs DiffMean vs LoRA on {cfg['model']}",
        "",
        f"Test prompts ({t['lora']['n']} = targets x {cfg['n_test']}); each arm's strength (LoRA: scale) "
        "chosen on the train prompts. Faithful success: the judge reads the target and "
        f"{', '.join(p for p in cfg['preserve'] if p != cfg['factor'])} read as on the unsteered image. "
        "Confidence: the judges' mean probability of their answer on the contact-sheet images.",
        "",
        "| arm | faithful success [95%] | success (target read) | judge confidence |",
        "|---|---|---|---|",
    ]
    for key in ("lora", "sae", "diffmean", "prompting", "unsteered"):
        row = t[key]
        succ = f"{row['success']:.2f}" if "success" in row else "-"
        c = f"{conf[key]:.2f}" if key in conf else "-"
        lines.append(f"| {names[key]} | {_ci(row)} | {succ} | {c} |")
    lines += ["", "| paired difference (test) | mean [95%] |", "|---|---|"]
    for a, b in (("lora", "sae"), ("lora", "diffmean"), ("lora", "prompting"), ("sae", "diffmean")):
        lines.append(
            f"| {names[a].split(' (')[0]} - {names[b].split(' (')[0]} | {_diff(t[f'{a}_minus_{b}'])} |"
        )
    lines += [
        "",
        "| target | SAE choice (train) | DiffMean choice (train) | LoRA scale (train) | SAE test "
        "| DiffMean test | LoRA test | prompting test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pt, lo in zip(result["per_target"], result["lora_per_target"], strict=True):
        s, dm, te = pt["chosen"]["sae"], pt["chosen"]["diffmean"], result["per_target_test"][pt["target"]]
        lines.append(
            f"| {pt['target']} | {s['method']} x{s['strength']:g} ({s['train']:.2f}) | x{dm['strength']:g} "
            f"({dm['train']:.2f}) | x{lo['scale']:g} ({lo['train']:.2f}) | {te['sae']:.2f} | "
            f"{te['diffmean']:.2f} | {lo['test']:.2f} | {te['prompting']:.2f} |"
        )
    side = [
        (lo["target"], lo["changed_on_test"]) for lo in result["lora_per_target"] if lo.get("changed_on_test")
    ]
    if side:
        per = "; ".join(f"{t}: " + ", ".join(f"{k} {v:.2f}" for k, v in c.items()) for t, c in side)
        lines += ["", f"LoRA side effects (share of test images whose judged factor changed): {per}"]
    cost = result["cost"]
    lines += [
        "",
        "| cost | parameters | file bytes | train seconds |",
        "|---|---|---|---|",
        f"| SAE (every concept) | {cost['sae']['params']:,} | {cost['sae']['file_bytes']:,} "
        "| harvest + train, once |",
    ]
    for c in cost["lora"]:
        lines.append(
            f"| LoRA {cfg['factor']}={c['value']} | {c['trainable_params']:,} | {c['file_bytes']:,} | "
            f"{c['train_s']:.0f} ({c['threads']} thread, load {c['load_average_1min_at_end']:.1f}) |"
        )
    return "\n".join(lines) + "\n"
