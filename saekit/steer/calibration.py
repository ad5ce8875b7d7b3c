"""`saekit scale`: measure activation scales at an SAE's hook point so strengths can be relative.

Stored beside the SAE, written atomically:
- `scales.json`: schema_version, hook point, model, tokens, mean / median activation norm;
- `scales.safetensors`: per feature `mean_active [d_sae]`, `max_active [d_sae]`, `freq [d_sae]`
  (fraction of tokens where the feature is > 0). Features that never fired have 0 mean and max.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from saekit.atomic import save_tensors_atomic, write_json_atomic
from saekit.errors import SteeringError

SCALES_JSON = "scales.json"
SCALES_TENSORS = "scales.safetensors"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """Measured scales at one hook point for one SAE."""

    mean_norm: float
    """Mean L2 norm of the raw activation vectors (per token)."""
    median_norm: float
    """Median L2 norm (robust to the huge-norm first/BOS token)."""
    n_tokens: int
    """How many token activations were measured."""
    mean_active: Tensor = field(repr=False)
    """`[d_sae]` mean activation of each feature over the tokens where it is > 0 (0 if never)."""
    max_active: Tensor = field(repr=False)
    """`[d_sae]` max activation of each feature (0 if it never fired)."""
    freq: Tensor = field(repr=False)
    """`[d_sae]` fraction of tokens where the feature is > 0."""
    hook_point: str | None = None
    """Hook point the activations came from."""
    model: str | None = None
    """Model name the activations came from."""
    corpus: str | None = None
    """Corpus spec used."""


@torch.no_grad()
def measure(
    sae, batches: Iterable[Tensor], *, quiet: bool = True, total: int | None = None, **meta
) -> Calibration:
    """Accumulate norms and per-feature active statistics over batches of raw activations `[B, d_in]`."""
    from tqdm import tqdm

    norms: list[Tensor] = []
    count = torch.zeros(sae.d_sae, dtype=torch.float64)
    total_act = torch.zeros(sae.d_sae, dtype=torch.float64)
    max_act = torch.zeros(sae.d_sae, dtype=torch.float64)
    n = 0
    for x in tqdm(batches, disable=quiet, desc="calibrating", unit="batch", total=total):
        x_BD = x.reshape(-1, x.shape[-1])
        sae.check_input(x_BD, "calibration activations")
        norms.append(x_BD.float().norm(dim=-1).cpu())
        f_BF = sae.activation_magnitude(sae.encode(x_BD)).double().cpu()  # |f| for signed SAEs
        active = f_BF > 0
        count += active.sum(0)
        total_act += f_BF.clamp_min(0).sum(0)
        max_act = torch.maximum(max_act, f_BF.max(0).values.clamp_min(0))
        n += x_BD.shape[0]
    if n == 0:
        raise SteeringError("calibration saw no activations; give a non-empty corpus and --tokens > 0")
    all_norms = torch.cat(norms)
    return Calibration(
        mean_norm=float(all_norms.mean()),
        median_norm=float(all_norms.median()),
        n_tokens=n,
        mean_active=(total_act / count.clamp_min(1)).float(),
        max_active=max_act.float(),
        freq=(count / n).float(),
        **meta,
    )


def save_calibration(folder: str | Path, cal: Calibration) -> tuple[Path, Path]:
    """Write `scales.json` + `scales.safetensors` atomically beside the SAE: in its folder, or for a
    single-file SAE in the folder named after it (`saekit.formats.output_folder`)."""
    from saekit.formats import output_folder

    folder = output_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors_path, json_path = folder / SCALES_TENSORS, folder / SCALES_JSON
    save_tensors_atomic(
        tensors_path,
        {"mean_active": cal.mean_active, "max_active": cal.max_active, "freq": cal.freq},
        metadata={"schema_version": str(SCHEMA_VERSION)},
    )
    write_json_atomic(
        json_path,
        {
            "schema_version": SCHEMA_VERSION,
            "format": "saekit.scales",
            "hook_point": cal.hook_point,
            "model": cal.model,
            "corpus": cal.corpus,
            "n_tokens": cal.n_tokens,
            "mean_norm": cal.mean_norm,
            "median_norm": cal.median_norm,
            "d_sae": int(cal.max_active.numel()),
            "tensors": SCALES_TENSORS,
        },
    )
    return json_path, tensors_path


def load_calibration(
    folder: str | Path, *, d_sae: int | None = None, required: bool = False
) -> Calibration | None:
    """Read the calibration stored beside an SAE (its folder, or `output_folder` of a single file);
    None (or SteeringError if `required`) when absent."""
    from safetensors.torch import load_file

    from saekit.formats import output_folder

    folder = output_folder(folder)
    json_path, tensors_path = folder / SCALES_JSON, folder / SCALES_TENSORS
    if not json_path.exists() or not tensors_path.exists():
        if required:
            raise SteeringError(
                f"no calibration in {folder} (expected {SCALES_JSON} and {SCALES_TENSORS}); run "
                f"`saekit scale --sae {folder} --model <model> --corpus shakespeare` first"
            )
        return None
    try:
        meta = json.loads(json_path.read_text())
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError) as exc:
        raise SteeringError(
            f"cannot read calibration in {folder}: {exc}; re-run `saekit scale --sae {folder}`"
        ) from exc
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise SteeringError(
            f"{json_path}: schema_version {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}; "
            f"re-run `saekit scale --sae {folder}`"
        )
    missing = {"mean_active", "max_active", "freq"} - set(tensors)
    if missing:
        raise SteeringError(f"{tensors_path} lacks {sorted(missing)}; re-run `saekit scale --sae {folder}`")
    if d_sae is not None and tensors["max_active"].numel() != d_sae:
        raise SteeringError(
            f"{tensors_path} has {tensors['max_active'].numel()} features but the SAE has d_sae={d_sae}; "
            f"the calibration belongs to another SAE — re-run `saekit scale --sae {folder}`"
        )
    return Calibration(
        mean_norm=float(meta["mean_norm"]),
        median_norm=float(meta["median_norm"]),
        n_tokens=int(meta["n_tokens"]),
        mean_active=tensors["mean_active"],
        max_active=tensors["max_active"],
        freq=tensors["freq"],
        hook_point=meta.get("hook_point"),
        model=meta.get("model"),
        corpus=meta.get("corpus"),
    )


def calibrate_model(
    model,
    tokenizer,
    sae,
    hook_point: str,
    texts,
    *,
    tokens: int = 20_000,
    context_len: int = 128,
    batch_size: int = 8,
    quiet: bool = True,
    model_name: str | None = None,
    corpus: str | None = None,
) -> Calibration:
    """Run `model` over `texts` (first `tokens` tokens, windows of `context_len`) and measure scales."""
    from saekit.steer.corpus_acts import iter_window_acts, token_windows

    windows = token_windows(tokenizer, texts, context_len, max_tokens=tokens)
    if not windows:
        raise SteeringError("the corpus produced no token windows; is it empty?")
    batches = iter_window_acts(model, hook_point, windows, batch_size=batch_size)
    n_batches = (len(windows) + batch_size - 1) // batch_size
    return measure(
        sae,
        batches,
        quiet=quiet,
        total=n_batches,
        hook_point=str(hook_point),
        model=model_name,
        corpus=corpus,
    )


#: what a verb calibrates on when an SAE has no scales.json yet (as `saekit scale`'s defaults)
AUTO_CALIBRATION_CORPUS = "shakespeare"
AUTO_CALIBRATION_TOKENS = 20_000


def ensure_calibration(
    sae, folder: str | Path, lm, hook_point: str, *, corpus: str = AUTO_CALIBRATION_CORPUS,
    tokens: int = AUTO_CALIBRATION_TOKENS, quiet: bool = False, who: str = "saekit",
) -> Calibration:
    """The SAE's calibration from `folder`, measured and saved there first when it has none (so a
    freshly trained SAE steers in norm/max units without a separate `saekit scale` run)."""
    cal = load_calibration(folder, d_sae=sae.d_sae)
    if cal is not None:
        return cal
    from saekit.data import load_corpus

    if not quiet:
        print(f"{who}: {folder} has no scales.json; calibrating on {tokens} tokens of {corpus} "
              f"(what `saekit scale` does)")  # fmt: skip
    texts = [d.text for d in load_corpus(corpus)]
    cal = calibrate_model(lm.model, lm.tokenizer, sae, hook_point, texts, tokens=tokens, quiet=quiet,
                          model_name=lm.name, corpus=corpus)  # fmt: skip
    save_calibration(folder, cal)
    return cal

