"""`saekit steer`: continue a prompt with and without steering, side by side; or explain a prompt.

The flags are `saekit.steer.run.SteerConfig` for a language model and
`saekit.steer.image.ImageSteerConfig` for an image generator (FLUX, Kandinsky 2.2); which one follows
from `--model` / `--prior` / the SAE's provenance (`saekit.steer.image.steer_target`).
"""

from __future__ import annotations


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` / `--name=VALUE` (the last one wins, as in tyro), else None."""
    found = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith(name + "="):
            found = a.split("=", 1)[1]
    return found


def main(argv: list[str]) -> int:
    import tyro

    from saekit.steer.image import ImageSteerConfig, steer_image, steer_target
    from saekit.steer.run import SteerConfig, run

    if steer_target(_flag(argv, "--model"), _flag(argv, "--sae"), _flag(argv, "--prior")) == "image":
        description = "Steer FLUX or Kandinsky 2.2 with SAE features; writes unsteered|steered PNGs."
        image_cfg = tyro.cli(ImageSteerConfig, args=argv, prog="saekit steer", description=description)
        result = steer_image(image_cfg)
        if not image_cfg.quiet:
            seed = image_cfg.seed
            print(f"{result.description}\nsaved {result.side_by_side} (unsteered | steered, seed {seed})")
        return 0
    print(run(tyro.cli(SteerConfig, args=argv, prog="saekit steer")))
    return 0
