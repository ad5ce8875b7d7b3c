"""The build's report: `report.json`, a markdown summary `report.md`, and contact sheets of generations."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from saekit.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from saekit.testbed.fluxbed.render import FACTORS


def image_grid_png(images: torch.Tensor, cols: int = 8, scale: int = 4) -> bytes:
    """PNG bytes of `images [N, 3, S, S]` in [0, 1] tiled `cols` wide, each pixel `scale` x `scale`,
    with a 1-pixel grey gutter."""
    from PIL import Image

    n, _, s, _ = images.shape
    rows = (n + cols - 1) // cols
    sheet = torch.full((3, rows * (s + 1) + 1, cols * (s + 1) + 1), 0.35)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[:, 1 + r * (s + 1) : 1 + r * (s + 1) + s, 1 + c * (s + 1) : 1 + c * (s + 1) + s] = images[
            i
        ].clamp(0, 1)
    arr = (sheet.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    img = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _row(name: str, acc: dict[str, float]) -> str:
    return f"| {name} | " + " | ".join(f"{acc[k]:.3f}" for k in (*FACTORS, "all")) + " |"


def markdown(report: dict) -> str:
    cfg = report["config"]
    head = "| | " + " | ".join((*FACTORS, "all")) + " |\n|---|" + "---|" * (len(FACTORS) + 1)
    gen = report["generation_accuracy"]
    chance = {**report["chance"], "all": float("nan")}
    lines = [
        "# fluxbed build report",
        "",
        f"Built in {report['build_s']:.0f} s wall clock, {report.get('build_cpu_s', float('nan')):.0f} s of "
        f"CPU time, on {report['threads']} thread(s) (whole run with judges and scoring "
        f"{report['total_s']:.0f} s; 1-minute load average at the end "
        f"{report.get('load_average_1min_at_end', float('nan')):.1f}); peak resident memory "
        f"{report['peak_rss_mib']:.0f} MiB.",
        f"Timings (s): {report['timings']}.",
        f"Parameters: {report['params']}.",
        f"Latents {report['latent']['shape']} (packed to {cfg['latent_channels'] * 4}-wide tokens); "
        f"final losses {report['final_loss']}.",
        "",
        "Per-factor accuracy (judges on held-out real renders; generations of `FluxPipeline.__call__` at "
        f"{cfg['eval_steps']} steps, {cfg['eval_prompts']} prompts per row, judged against their captions):",
        "",
        head,
        _row("judges on real test renders", report["judge_accuracy_on_real_test_renders"]),
        _row("judges on VAE round trips", report["judge_accuracy_on_vae_round_trips"]),
        _row("generations, training combinations", gen["training_combinations"]),
        _row("generations, held-out combinations", gen["heldout_combinations"]),
        "| chance | " + " | ".join(f"{chance[k]:.3f}" for k in (*FACTORS, "all")) + " |",
        "",
        "Samples: `samples_train.png`, `samples_heldout.png` (prompts in `samples.json`).",
        "",
    ]
    return "\n".join(lines)


def write_report(out: Path, report: dict, images, prompts, images_h, prompts_h) -> None:
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown(report))
    write_bytes_atomic(out / "samples_train.png", image_grid_png(images))
    write_bytes_atomic(out / "samples_heldout.png", image_grid_png(images_h))
    write_json_atomic(out / "samples.json", {"train": prompts, "heldout": prompts_h, "cols": 8})
