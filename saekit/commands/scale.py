"""`saekit scale`: measure activation scales at an SAE's hook point (for `norm` / `max` strengths)."""

from __future__ import annotations

from dataclasses import dataclass


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


def measure(cfg: ScaleConfig, *, lm=None):
    """Measure the scales and save them beside the SAE; returns (Calibration, scales.json path).

    `lm` (a LoadedModel) is used instead of loading the model. The files go into
    `saekit.formats.output_folder(cfg.sae)`: the SAE folder, or for a single-file SAE a folder named
    after the file beside it (where `saekit steer` looks for them).
    """
    import torch

    from saekit.data import load_corpus
    from saekit.formats import output_folder
    from saekit.steer.calibration import calibrate_model, save_calibration
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


def describe_scales(cal, json_path) -> str:
    """What `saekit scale` (and `saekit demo`) prints about a measurement."""
    fired = int((cal.max_active > 0).sum())
    med = float(cal.max_active[cal.max_active > 0].median()) if fired else 0.0
    return (
        f"hook {cal.hook_point}: {cal.n_tokens} tokens, activation norm mean {cal.mean_norm:.3f}, "
        f"median {cal.median_norm:.3f}; {fired}/{cal.max_active.numel()} features fired "
        f"(median max activation of those {med:.3f})\nwrote {json_path} (+ scales.safetensors)"
    )


def main(argv: list[str]) -> int:
    import tyro

    cfg = tyro.cli(ScaleConfig, args=argv, prog="saekit scale")
    print(describe_scales(*measure(cfg)))
    return 0
