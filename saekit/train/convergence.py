"""How long to train when the user does not say, and whether a finished run was still improving.

One pass over a small store stops far from converged (SmolLM2 layer 15, 200k rows, TopK k=32 16x:
FVU 0.376 after one pass, 0.134 after three), and nothing used to say so. The default budget is
therefore at least `DEFAULT_MIN_PASSES` passes over stores smaller than `DEFAULT_MIN_TOKENS` rows, and
one pass over larger ones; at the end the logged FVU of the constant-LR part of the run is checked for a
plateau, and a run whose FVU was still falling says so with the flag that trains longer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: passes over a small store when --total-tokens is not given
DEFAULT_MIN_PASSES = 3
#: ... but no more passes than this many rows need: a big store gets one pass
DEFAULT_MIN_TOKENS = 1_000_000
#: relative FVU drop between the two halves of the checked window that counts as "still falling"
STILL_FALLING = 0.03
#: a drop above this is called far from converged (one pass over the demo's 200k-row store: ~-20%)
FAR_FROM_CONVERGED = 0.10
#: the checked window: this fraction of the run, ending where the LR starts to decay
WINDOW = 0.2


def default_train_rows(store_rows: int) -> int:
    """Rows to train on when none are given: one pass, at least min(3 passes, 1M rows)."""
    return max(store_rows, min(DEFAULT_MIN_PASSES * store_rows, DEFAULT_MIN_TOKENS))


@dataclass(frozen=True)
class Plateau:
    """The FVU trend over the last constant-LR stretch of a run."""

    early_fvu: float
    late_fvu: float
    window: tuple[int, int]
    """Steps [start, end) of the checked window."""

    @property
    def drop(self) -> float:
        """Relative fall of the mean FVU from the window's first half to its second."""
        return 1.0 - self.late_fvu / max(self.early_fvu, 1e-30)

    @property
    def still_falling(self) -> bool:
        return self.drop > STILL_FALLING


def fvu_plateau(
    records: Sequence[dict[str, Any]], total_steps: int, lr_decay: str, lr_decay_start: float
) -> Plateau | None:
    """The trend of the logged (training-batch) FVU over the window before the LR decays.

    The decay phase itself always lowers FVU (a lower LR averages the noise away), so it says nothing
    about convergence; the stretch just before it does. None when the log is too sparse to tell
    (fewer than two records in either half of the window).
    """
    end = total_steps if lr_decay == "none" else int(lr_decay_start * total_steps)
    start = max(0, end - int(WINDOW * total_steps))
    mid = (start + end) // 2
    early = [r["fvu"] for r in records if start <= r["step"] < mid and "fvu" in r]
    late = [r["fvu"] for r in records if mid <= r["step"] <= end and "fvu" in r]
    if len(early) < 2 or len(late) < 2:
        return None
    return Plateau(sum(early) / len(early), sum(late) / len(late), (start, end))


def convergence_note(plateau: Plateau | None, total_tokens: int) -> str | None:
    """A line for the user when the run ended while FVU was still falling, else None."""
    if plateau is None or not plateau.still_falling:
        return None
    far = plateau.drop > FAR_FROM_CONVERGED
    verdict = "this run is far from converged" if far else "more tokens would still help"
    return (
        f"FVU was still falling before the LR decay ({plateau.early_fvu:.3f} -> {plateau.late_fvu:.3f}, "
        f"-{100 * plateau.drop:.0f}% over {plateau.window[1] - plateau.window[0]} steps): {verdict}; "
        f"train longer, e.g. --total-tokens {2 * total_tokens}"
    )
