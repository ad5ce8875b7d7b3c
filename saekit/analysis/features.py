"""Feature selection specs shared by every `analyze` verb: `0,5,10`, `0-20`, `0-10,50-60`, `top:N`,
`readable:N` (or `readable:N:LO-HI`, firing frequency band in percent), `active:"prompt"`.

`top:N` takes the N most frequent features, which on a trained SAE are dense (firing on 10-20% of
tokens) and hard to read; `readable:N` takes N features whose frequency lies in a band a person can read
(default 0.05-2% of tokens), spread evenly over that band's frequency order.

Parsing is separate from resolution: `parse_feature_spec` only checks syntax, `resolve_features`
turns the parsed items into indices, which may need data (`top:N` needs firing counts, `active:`
needs a function that scores a prompt). Ranges are inclusive (`0-20` is 21 features) because that is
how people write them in a shell.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from saekit.errors import FeatureSpecError

_RANGE_RE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


@dataclass(frozen=True)
class SpecItem:
    """One comma-separated part of a spec."""

    kind: Literal["index", "range", "top", "readable", "active"]
    """`index` (one feature), `range` (inclusive lo..hi), `top` (N most frequent), `readable` (N in a
    frequency band), `active` (prompt)."""
    lo: int = 0
    """Feature index (index), range start (range), or N (top / readable / active)."""
    hi: int = 0
    """Inclusive range end (range only)."""
    band: tuple[float, float] = (0.0, 0.0)
    """Firing-frequency band in percent of rows (readable only)."""
    prompt: str = ""
    """The prompt text (active only)."""


def _split(spec: str) -> list[str]:
    """Split on commas outside double quotes, so `active:"a, b"` stays one item."""
    parts, buf, quoted = [], [], False
    for ch in spec:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise FeatureSpecError(f'feature spec {spec!r}: unbalanced double quote; write active:"your prompt"')
    parts.append("".join(buf))
    return [p.strip() for p in parts]


def _parse_active(body: str, where: str) -> SpecItem:
    n = 10
    m = re.match(r"^(\d+):(.*)$", body, re.DOTALL)
    if m and not body.startswith('"'):
        n, body = int(m.group(1)), m.group(2).strip()
    if len(body) >= 2 and body[0] == body[-1] == '"':
        body = body[1:-1]
    if not body.strip():
        raise FeatureSpecError(f'{where}: active: needs a prompt, e.g. active:"The cat sat"')
    if n == 0:
        raise FeatureSpecError(f'{where}: active:N:"prompt" needs N >= 1')
    return SpecItem("active", lo=n, prompt=body)


#: the default frequency band of `readable:N`, percent of rows: rarer features have too few examples
#: to read, denser ones respond to too much
READABLE_BAND = (0.05, 2.0)
_BAND_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)$")


def _parse_readable(body: str, where: str) -> SpecItem:
    n, _, band = body.partition(":")
    if not n.strip().isdigit() or int(n) == 0:
        raise FeatureSpecError(f"{where}: readable:N needs a positive integer N, e.g. readable:10")
    lo, hi = READABLE_BAND
    if band:
        m = _BAND_RE.match(band.strip())
        if not m or not 0 <= float(m.group(1)) < float(m.group(2)) <= 100:
            raise FeatureSpecError(
                f"{where}: the band is LO-HI in percent of tokens with 0 <= LO < HI <= 100, e.g. "
                "readable:10:0.05-2"
            )
        lo, hi = float(m.group(1)), float(m.group(2))
    return SpecItem("readable", lo=int(n), band=(lo, hi))


def _parse_part(part: str, where: str) -> SpecItem:
    low = part.lower()
    if low.startswith("readable:"):
        return _parse_readable(part[9:].strip(), where)
    if low.startswith("top:"):
        n = part[4:].strip()
        if not n.isdigit() or int(n) == 0:
            raise FeatureSpecError(f"{where}: top:N needs a positive integer N, e.g. top:10")
        return SpecItem("top", lo=int(n))
    if low.startswith("active:"):
        return _parse_active(part[7:].strip(), where)
    if part.isdigit():
        return SpecItem("index", lo=int(part))
    if m := _RANGE_RE.match(part):
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise FeatureSpecError(f"{where}: range end {hi} is below its start {lo}; write {hi}-{lo}")
        return SpecItem("range", lo=lo, hi=hi)
    raise FeatureSpecError(
        f"{where}: not understood; accepted forms are an index (5), an inclusive range (0-20), "
        "top:N (N most frequent features), readable:N[:LO-HI] (N features firing on LO-HI% of tokens) "
        'and active:"prompt" (or active:N:"prompt")'
    )


def parse_feature_spec(spec: str) -> list[SpecItem]:
    """Parse a spec into items; raises FeatureSpecError naming the bad part and the accepted forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise FeatureSpecError("empty feature spec; use e.g. '0,5,10', '0-20', 'top:10' or 'active:\"text\"'")
    items: list[SpecItem] = []
    for part in _split(spec.strip()):
        where = f"feature spec {spec!r}, part {part!r}"
        if not part:
            raise FeatureSpecError(f"{where}: empty item (doubled or trailing comma?)")
        items.append(_parse_part(part, where))
    return items


def _top(it: SpecItem, d_sae: int, firing_counts: Tensor | None) -> list[int]:
    if firing_counts is None:
        raise FeatureSpecError(
            f"top:{it.lo} needs firing frequencies; run `analyze real` on a store first or pass "
            "explicit indices"
        )
    counts = firing_counts.detach().float().cpu()
    if counts.shape != (d_sae,):
        raise FeatureSpecError(f"firing counts have shape {tuple(counts.shape)}, expected ({d_sae},)")
    # stable ordering: most frequent first, ties by lower index
    return torch.argsort(-counts, stable=True)[: min(it.lo, d_sae)].tolist()


def _readable(it: SpecItem, d_sae: int, firing_counts: Tensor | None, n_rows: int | None) -> list[int]:
    if firing_counts is None or not n_rows:
        raise FeatureSpecError(
            f"readable:{it.lo} needs firing frequencies; run `analyze real` on a store first or pass "
            "explicit indices"
        )
    freq_pct = 100.0 * firing_counts.detach().double().cpu() / n_rows
    if freq_pct.shape != (d_sae,):
        raise FeatureSpecError(f"firing counts have shape {tuple(freq_pct.shape)}, expected ({d_sae},)")
    lo, hi = it.band
    inside = torch.nonzero((freq_pct >= lo) & (freq_pct <= hi)).flatten()
    if inside.numel() == 0:
        raise FeatureSpecError(
            f"no feature fires on {lo:g}-{hi:g}% of the {n_rows} rows; widen the band "
            f"(readable:{it.lo}:LO-HI) or use top:{it.lo}"
        )
    # evenly spaced positions in frequency order: rare, middle and common features of the band alike
    order = inside[torch.argsort(freq_pct[inside], stable=True)]
    n = min(it.lo, order.numel())
    if n == 1:
        return [int(order[order.numel() // 2])]
    pos = torch.linspace(0, order.numel() - 1, n).round().long()
    return order[pos].tolist()


def _active(it: SpecItem, d_sae: int, prompt_scores: Callable[[str], Tensor] | None) -> list[int]:
    if prompt_scores is None:
        raise FeatureSpecError(
            f'active:"{it.prompt}" needs a model to run the prompt through; give --model (or a '
            "store whose manifest names its model) or pass explicit indices"
        )
    scores = prompt_scores(it.prompt).detach().float().cpu()
    if scores.shape != (d_sae,):
        raise FeatureSpecError(f"prompt scores have shape {tuple(scores.shape)}, expected ({d_sae},)")
    n = min(it.lo, int((scores > 0).sum()))
    if n == 0:
        raise FeatureSpecError(f"no feature is active on prompt {it.prompt!r}; try a longer prompt")
    return torch.argsort(-scores, stable=True)[:n].tolist()


def resolve_features(
    spec: str | Sequence[int],
    d_sae: int,
    *,
    firing_counts: Tensor | None = None,
    n_rows: int | None = None,
    prompt_scores: Callable[[str], Tensor] | None = None,
) -> list[int]:
    """Feature indices for `spec`, in spec order, without duplicates.

    `firing_counts [d_sae]` is needed for `top:N`, and with `n_rows` (the rows counted) for
    `readable:N`; `prompt_scores(prompt) -> [d_sae]` (e.g. the max
    activation of each feature over the prompt's tokens) for `active:`. Indices must be < d_sae.
    """
    items = (
        parse_feature_spec(spec) if isinstance(spec, str) else [SpecItem("index", lo=int(i)) for i in spec]
    )
    out: list[int] = []
    seen: set[int] = set()
    for it in items:
        if it.kind == "index":
            picked = [it.lo]
        elif it.kind == "range":
            picked = list(range(it.lo, it.hi + 1))
        elif it.kind == "top":
            picked = _top(it, d_sae, firing_counts)
        elif it.kind == "readable":
            picked = _readable(it, d_sae, firing_counts, n_rows)
        else:
            picked = _active(it, d_sae, prompt_scores)
        for j in picked:
            if not 0 <= j < d_sae:
                raise FeatureSpecError(
                    f"feature index {j} is out of range: this SAE has d_sae={d_sae} features, valid "
                    f"indices are 0..{d_sae - 1}"
                )
            if j not in seen:
                seen.add(j)
                out.append(j)
    return out
