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


def main(argv: list[str]) -> int:
    import tyro

    cfg = tyro.cli(ScaleConfig, args=argv, prog="saekit scale")
    import torch

    from saekit.data import load_corpus
    from saekit.steer.calibration import calibrate_model, save_calibration
    from saekit.steer.session import open_session

    s = open_session(cfg.sae, model=cfg.model, dtype=cfg.dtype, hook_point=cfg.hook_point, device=cfg.device)
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
    json_path, _ = save_calibration(cfg.sae, cal)
    fired = int((cal.max_active > 0).sum())
    med = float(cal.max_active[cal.max_active > 0].median()) if fired else 0.0
    print(
        f"hook {cal.hook_point}: {cal.n_tokens} tokens, activation norm mean {cal.mean_norm:.3f}, "
        f"median {cal.median_norm:.3f}; {fired}/{cal.max_active.numel()} features fired "
        f"(median max activation of those {med:.3f})"
    )
    print(f"wrote {json_path} (+ scales.safetensors)")
    return 0
