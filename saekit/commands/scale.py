"""`saekit scale`: measure activation scales at an SAE's hook point (for `norm` / `max` strengths).

The flags are `saekit.steer.scale.ScaleConfig`; `saekit.steer.scale.measure_scales` does the work.
"""

from __future__ import annotations


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

    from saekit.steer.scale import ScaleConfig, measure_scales

    print(describe_scales(*measure_scales(tyro.cli(ScaleConfig, args=argv, prog="saekit scale"))))
    return 0
