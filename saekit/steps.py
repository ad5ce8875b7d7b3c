"""The one parser for denoising-step windows, shared by harvest and image steering.

Grammar: `all` (or empty / None: every step), `first_half`, `second_half`, `3`, `0-3` (inclusive),
`5-` (to the last step; needs the step count), and comma-separated combinations (`0,2,5-7`).
"""

from __future__ import annotations

from saekit.errors import SteeringError

NAMED_WINDOWS = ("all", "first_half", "second_half")


def parse_steps(spec: str | None, n_steps: int | None = None) -> set[int] | None:
    """`spec` -> the set of step indices it names, or None for every step.

    Named halves and open ranges need `n_steps`; indices past `n_steps - 1` are refused when it is given.
    """
    if spec is None or spec.strip() in ("", "all"):
        return None
    out: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        out |= _parse_part(part, spec, n_steps)
    if any(s < 0 for s in out):
        raise SteeringError(f"steps must be >= 0, found {sorted(out)} in {spec!r}")
    if n_steps is not None and out and max(out) >= n_steps:
        raise SteeringError(
            f"steps {spec!r} name step {max(out)} but the run has {n_steps} (0..{n_steps - 1})"
        )
    return out


def _parse_part(part: str, spec: str, n_steps: int | None) -> set[int]:
    if part in ("first_half", "second_half"):
        if n_steps is None:
            raise SteeringError(f"step window {part!r} needs the number of steps")
        half = n_steps // 2
        return set(range(half)) if part == "first_half" else set(range(half, n_steps))
    if part.endswith("-") and n_steps is None:
        raise SteeringError(
            f"step range {part!r} is open-ended; give the end (e.g. {part}3) or the step count"
        )
    try:
        if "-" in part[1:]:
            a, b = part.split("-", 1)
            return set(range(int(a), (int(b) if b else n_steps - 1) + 1))
        return {int(part)}
    except ValueError as exc:
        raise SteeringError(
            f"cannot parse steps {spec!r}: use e.g. 'all', 'first_half', '0-3', '0,2,5' or '5-'"
        ) from exc
