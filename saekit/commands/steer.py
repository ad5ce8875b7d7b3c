"""`saekit steer`: continue a prompt with and without steering, side by side; or explain a prompt."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from typing import Literal

import torch

from saekit.errors import SaekitError, SteeringError


@dataclass(frozen=True)
class SteerConfig:
    """Steer generation with SAE features (`--feature 123 --method clamp --strength 4max --prompt ...`)."""

    sae: str
    """SAE folder (with scales.json from `saekit scale` for norm/max strengths)."""
    prompt: str | None = None
    """Prompt to continue."""
    feature: tuple[int, ...] = ()
    """Feature id(s) to steer; several are steered together."""
    method: Literal["additive", "surgery", "clamp", "boost_active", "ablate"] = "clamp"
    """Steering method (see saekit.steer.methods)."""
    strength: str = "4max"
    """Strength with unit: `12` (abs), `0.5norm`, `4max`; one value, or one per feature comma-separated."""
    positions: Literal["all", "prompt", "generated"] = "all"
    """Which token positions to edit."""
    keep_error: bool = False
    """boost_active only: keep the SAE error term."""
    max_new_tokens: int = 40
    """Tokens to generate."""
    sample: bool = False
    """Sample (temperature/top-p) instead of greedy; both runs use the same seed."""
    temperature: float = 0.8
    """Sampling temperature."""
    seed: int = 0
    """Sampling seed (identical for the steered and unsteered runs)."""
    chat: bool = True
    """Wrap the prompt in the model's chat template (when it has one)."""
    explain_prompt: str | None = None
    """Instead of steering: list the features most active on this prompt with their top tokens."""
    top_n: int = 10
    """How many features --explain-prompt lists."""
    analysis: str | None = None
    """analysis.json (or its folder) from `saekit analyze real`; default: <sae>/analysis.json if present."""
    model: str | None = None
    """Model (default: the SAE's provenance, else smollm2)."""
    hook_point: str | None = None
    """Override the SAE's hook point."""
    dtype: str = "auto"
    """Model dtype: auto (bfloat16 where the CPU has native bf16, else float32), bfloat16, float32."""
    width: int = 100
    """Total width of the side-by-side output."""


def side_by_side(left_title: str, left: str, right_title: str, right: str, width: int = 100) -> str:
    """Two wrapped columns."""
    col = max(20, (width - 3) // 2)
    a = [left_title, "-" * min(col, len(left_title))] + textwrap.wrap(left or "(empty)", col)
    b = [right_title, "-" * min(col, len(right_title))] + textwrap.wrap(right or "(empty)", col)
    n = max(len(a), len(b))
    a += [""] * (n - len(a))
    b += [""] * (n - len(b))
    return "\n".join(f"{x.ljust(col)} | {y}" for x, y in zip(a, b))


@torch.no_grad()
def run(cfg: SteerConfig, lm=None) -> str:
    """Do what the flags say and return the text to print (the library entry of the command)."""
    from saekit.steer.apply import steer_sae
    from saekit.steer.explain import explain_prompt, format_explanations
    from saekit.steer.generate import GenerationConfig, encode_prompt, generate_pair
    from saekit.steer.methods import METHOD_SPACE
    from saekit.steer.session import open_session
    from saekit.steer.strength import parse_strengths, resolve_for_features

    s = open_session(cfg.sae, model=cfg.model, dtype=cfg.dtype, hook_point=cfg.hook_point, lm=lm)
    model, tok = s.lm.model, s.lm.tokenizer
    if cfg.explain_prompt is not None:
        ids = encode_prompt(tok, cfg.explain_prompt, chat=False)
        from pathlib import Path

        from saekit.steer.explain import load_example_tokens

        examples = load_example_tokens(cfg.analysis or Path(cfg.sae) / "analysis.json")
        items = explain_prompt(model, tok, s.sae, s.hook_point, ids, top_n=cfg.top_n, example_tokens=examples)
        return f"features most active on the prompt at {s.hook_point}:\n" + format_explanations(items)
    if cfg.prompt is None or not cfg.feature:
        raise SteeringError("give --prompt and --feature (or --explain-prompt to find features)")
    strengths = parse_strengths(cfg.strength)
    if len(strengths) not in (1, len(cfg.feature)):
        raise SteeringError(
            f"{len(strengths)} strengths for {len(cfg.feature)} features; give one, or one per feature"
        )
    features = list(cfg.feature)
    abs_s = [0.0] * len(features) if cfg.method == "ablate" else []
    for i, j in enumerate(features if cfg.method != "ablate" else []):
        st = strengths[0] if len(strengths) == 1 else strengths[i]
        abs_s += resolve_for_features(st, METHOD_SPACE[cfg.method], s.sae, [j], s.calibration, s.sae_folder)
    gen = GenerationConfig(
        max_new_tokens=cfg.max_new_tokens,
        greedy=not cfg.sample,
        temperature=cfg.temperature,
        seed=cfg.seed,
        chat=None if cfg.chat else False,
    )
    pair = generate_pair(
        model,
        tok,
        cfg.prompt,
        lambda: steer_sae(
            model,
            s.sae,
            cfg.method,
            features,
            abs_s,
            hook_point=s.hook_point,
            positions=cfg.positions,
            keep_error=cfg.keep_error,
        ),
        gen,
    )
    desc = ", ".join(f"f{j}={v:.3g}" for j, v in zip(features, abs_s))
    head = (
        f"prompt: {cfg.prompt!r}\nhook {s.hook_point}; {cfg.method} {cfg.strength} -> {desc} "
        f"({METHOD_SPACE[cfg.method]} units); positions={cfg.positions}; "
        f"{'sampled, seed ' + str(cfg.seed) if cfg.sample else 'greedy'}\n"
    )
    return head + side_by_side(
        "unsteered",
        pair.unsteered.text,
        f"steered ({cfg.method} {cfg.strength})",
        pair.steered.text,
        cfg.width,
    )


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` / `--name=VALUE` (the last one wins, as in tyro), else None."""
    found = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith(name + "="):
            found = a.split("=", 1)[1]
    return found


def image_main(argv: list[str]) -> int:
    """`saekit steer` on an image generator (FLUX, Kandinsky 2.2): unsteered | steered PNGs."""
    import tyro

    from saekit.steer.image import ImageSteerConfig, steer_image

    cfg = tyro.cli(
        ImageSteerConfig,
        args=argv,
        prog="saekit steer",
        description="Steer FLUX or Kandinsky 2.2 with SAE features; writes unsteered|steered PNGs.",
    )
    result = steer_image(cfg)
    if not cfg.quiet:
        print(f"{result.description}\nsaved {result.side_by_side} (unsteered | steered, seed {cfg.seed})")
    return 0


def main(argv: list[str]) -> int:
    import tyro

    from saekit.steer.image import steer_target

    # image generators (by --model / --prior, else the SAE's provenance): the image path
    if steer_target(_flag(argv, "--model"), _flag(argv, "--sae"), _flag(argv, "--prior")) == "image":
        return image_main(argv)

    cfg = tyro.cli(SteerConfig, args=argv, prog="saekit steer")
    try:
        print(run(cfg))
    except SaekitError as exc:
        print(f"saekit steer: {exc}", file=sys.stderr)
        return 1
    return 0
