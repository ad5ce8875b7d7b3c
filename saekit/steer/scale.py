"""The library entry of `saekit scale`: `ScaleConfig` (also the flags) and `measure_scales`.

Measures the activation scales at an SAE's hook point that `norm` / `max` strengths refer to
(`saekit.steer.calibration` holds the measurement and the files); this module loads the SAE, the model
and the corpus the flags name and saves the result beside the SAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saekit.steer.calibration import Calibration, calibrate_model, save_calibration


@dataclass(frozen=True)
class ScaleConfig:
    """Measure mean/median activation norm and per-feature max/mean activation; store beside the SAE."""

    sae: str
    """SAE folder; scales.json + scales.safetensors are written into it."""
    model: str | None = None
    """Model name or path (default: the SAE's provenance, else smollm2)."""
    corpus: str = "shakespeare"
    """Corpus spec for `saekit.data.load_corpus` (shakespeare, bible, default, a .txt/.jsonl file)."""
    tokens: int = 20_000
    """How many tokens to measure."""
    context_len: int = 128
    """Tokens per window."""
    batch_size: int = 8
    """Windows per forward pass."""
    hook_point: str | None = None
    """Override the SAE's hook point."""
    dtype: str = "auto"
    """Model dtype: auto (bfloat16 where the CPU has native bf16, else float32), bfloat16, float32."""
    device: str = "auto"
    """Device for the model and the SAE: auto | cpu | cuda | cuda:N."""
    quiet: bool = False
    """No progress bar."""


def measure_scales(cfg: ScaleConfig, *, lm=None) -> tuple[Calibration, Path]:
    """Measure the scales and save them beside the SAE; returns (Calibration, scales.json path).

    `lm` (a LoadedModel) is used instead of loading the model. The files go into
    `saekit.formats.output_folder(cfg.sae)`: the SAE folder, or for a single-file SAE a folder named
    after the file beside it (where `saekit steer` looks for them).
    """
    import torch

    from saekit.data import load_corpus
    from saekit.formats import output_folder
    from saekit.steer.session import open_session

    s = open_session(
        cfg.sae, model=cfg.model, dtype=cfg.dtype, hook_point=cfg.hook_point, lm=lm, device=cfg.device
    )
    texts = [d.text for d in load_corpus(cfg.corpus)]
    with torch.no_grad():  # scoped: a global switch would leak into callers (tests, the demo)
        cal = calibrate_model(
            s.lm.model,
            s.lm.tokenizer,
            s.sae,
            s.hook_point,
            texts,
            tokens=cfg.tokens,
            context_len=cfg.context_len,
            batch_size=cfg.batch_size,
            quiet=cfg.quiet,
            model_name=s.lm.name,
            corpus=cfg.corpus,
        )
    folder = output_folder(cfg.sae)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, _ = save_calibration(folder, cal)
    return cal, json_path
