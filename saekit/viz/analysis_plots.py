"""PNG reports of `analyze real|synthetic|compare`, drawn from the analysis JSON document only.

Headless (Agg). Token text is drawn with `parse_math=False` so `$` in tokens is literal, and
whitespace/newlines are made visible (`·`, `⏎`) so highlighted contexts stay readable.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import colormaps
from matplotlib.ticker import NullFormatter

from saekit.atomic import atomic_path

DPI = 110
plt.rcParams.update({"font.size": 10, "axes.titlesize": 12, "axes.titleweight": "bold"})


#: the one font token text is drawn in (monospace, so highlighted contexts line up)
TOKEN_FONT = "DejaVu Sans Mono"


@lru_cache(maxsize=4096)
def _drawable(c: str) -> bool:
    """The token font has a glyph for `c` (else matplotlib draws a box and warns once per glyph)."""
    from matplotlib import font_manager

    font = _token_font(font_manager.findfont(TOKEN_FONT))
    return font.get_char_index(ord(c)) != 0


@lru_cache(maxsize=2)
def _token_font(path: str):
    from matplotlib import ft2font

    return ft2font.FT2Font(path)


def show_token(tok: str, limit: int = 18) -> str:
    """Make whitespace and control characters visible, write characters the font cannot draw as their
    code point (`U+FF1A`), and keep very long tokens short."""
    s = tok.replace("\n", "⏎").replace("\t", "⇥").replace(" ", "·")
    s = "".join(
        f"\\x{ord(c):02x}" if unicodedata.category(c)[0] == "C" else c if _drawable(c) else f"U+{ord(c):04X}"
        for c in s
    )
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return path


def _highlight_row(
    ax,
    tokens: list[str],
    acts: list[float],
    vmax: float,
    y: float,
    focus: int | None,
    x0: float = 0.0,
    x_max: float = 0.99,
    fontsize: float = 10,
) -> None:
    """Draw tokens left to right at height y, background shaded by activation (orange)."""
    cmap = colormaps["Oranges"]
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    inv = ax.transAxes.inverted()
    x = x0
    for i, (tok, a) in enumerate(zip(tokens, acts)):
        level = max(0.0, a) / vmax if vmax > 0 else 0.0
        face = cmap(0.15 + 0.75 * level) if a > 0 else (1, 1, 1, 0)
        t = ax.text(
            x,
            y,
            show_token(tok),
            transform=ax.transAxes,
            fontsize=fontsize,
            va="center",
            ha="left",
            family=TOKEN_FONT,
            parse_math=False,
            fontweight="bold" if i == focus else "normal",
            bbox={
                "boxstyle": "square,pad=0.15",
                "fc": face,
                "ec": "black" if i == focus else "none",
                "lw": 1.0,
            },
        )
        bb = inv.transform(t.get_window_extent(renderer).get_points())
        x = bb[1, 0] + 0.004
        if x > x_max:
            t.set_text("…")
            break


def _stats_text(feat: dict, summary: dict) -> str:
    s = feat["stats"]
    q = s["quantiles"]

    def fmt(v):
        return "—" if v is None else f"{v:.3g}"

    lines = [
        f"feature {feat['index']}",
        f"fires on {s['count']:,} of {summary.get('n_rows', 0):,} tokens",
        f"frequency   {s['frequency']:.3%}",
        f"mean active {fmt(s['mean_when_active'])}",
        f"max         {fmt(s['max'])}",
        "quantiles (active):",
    ]
    lines += [f"  p{float(k) * 100:g}".ljust(8) + f" {fmt(v)}" for k, v in q.items()]
    return "\n".join(lines)


def _histogram(ax, feat: dict) -> None:
    h = feat["histogram"]
    if not h["counts"]:
        ax.text(0.5, 0.5, "never fired", ha="center", va="center", transform=ax.transAxes, fontsize=14)
        ax.set_axis_off()
        return
    edges, counts = h["edges"], h["counts"]
    widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="tab:orange", edgecolor="black", lw=0.3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short log ranges
    ax.set_xlabel("activation (when active)")
    ax.set_ylabel("tokens")
    ax.set_title("activation histogram")


def _logit_bars(ax, effects: list[dict], title: str, color: str) -> None:
    labels = [show_token(e["token"], 16) for e in effects][::-1]
    vals = [e["effect"] for e in effects][::-1]
    ax.barh(range(len(vals)), vals, color=color)
    ax.set_yticks(range(len(vals)))
    ax.set_yticklabels(labels, family=TOKEN_FONT)
    ax.set_title(title)
    ax.axvline(0, color="black", lw=0.5)


def feature_real_png(doc: dict, feature: int, out_dir: str | Path, n_contexts: int = 10) -> Path:
    """`feature_N_real.png`: stats panel, histogram, highlighted top contexts, logit effects."""
    feat = doc["features"][str(feature)]
    examples = feat["top_examples"][:n_contexts]
    le = feat.get("logit_effects")
    fig = plt.figure(figsize=(14, 11 if le else 8.5))
    heights = [1.0, 1.45, 0.95] if le else [1.0, 1.45]
    gs = fig.add_gridspec(
        len(heights),
        2,
        height_ratios=heights,
        hspace=0.45,
        wspace=0.35,
        left=0.07,
        right=0.97,
        top=0.93,
        bottom=0.06,
    )
    fig.suptitle(
        f"Feature {feature} — real activations ({doc['source'].get('model') or 'store'}, "
        f"{doc['source'].get('hook_point') or ''})",
        fontsize=14,
        fontweight="bold",
    )
    ax = fig.add_subplot(gs[0, 0])
    ax.set_axis_off()
    ax.text(
        0.0,
        1.0,
        _stats_text(feat, doc["summary"]),
        va="top",
        ha="left",
        family=TOKEN_FONT,
        fontsize=11,
        transform=ax.transAxes,
        parse_math=False,
    )
    _histogram(fig.add_subplot(gs[0, 1]), feat)
    ax = fig.add_subplot(gs[1, :])
    ax.set_axis_off()
    ax.set_title(f"top {len(examples)} contexts (shade = activation, box = top token)", loc="left")
    vmax = max([e["activation"] for e in examples] or [1.0])
    n = max(len(examples), 1)
    for i, e in enumerate(examples):
        y = 1.0 - (i + 0.5) / n
        ax.text(
            0.0,
            y,
            f"{e['activation']:.3g}",
            transform=ax.transAxes,
            va="center",
            ha="left",
            family=TOKEN_FONT,
            fontsize=10,
            parse_math=False,
        )
        cx = e["context"]
        _highlight_row(ax, cx["tokens"], cx["activations"], vmax, y, cx["focus"], x0=0.07)
    if not examples:
        ax.text(
            0.5,
            0.5,
            "no activating examples (dead feature)",
            ha="center",
            transform=ax.transAxes,
            fontsize=13,
        )
    if le:
        _logit_bars(fig.add_subplot(gs[2, 0]), le["promoted"], "logit effect: promoted", "tab:green")
        _logit_bars(fig.add_subplot(gs[2, 1]), le["suppressed"], "logit effect: suppressed", "tab:red")
    return _save(fig, Path(out_dir) / f"feature_{feature}_real.png")


def feature_synthetic_png(doc: dict, feature: int, out_dir: str | Path) -> Path:
    """`feature_N_synthetic.png`: optimisation curves vs real max and random baseline, best sequences."""
    feat = doc["features"][str(feature)]
    syn = feat["synthetic"]
    fig = plt.figure(figsize=(13, 8.5))
    gs = fig.add_gridspec(
        2, 1, height_ratios=[1.2, 1.0], hspace=0.35, left=0.08, right=0.97, top=0.92, bottom=0.05
    )
    fig.suptitle(
        f"Feature {feature} — synthetic maximisation ({syn['config']['method']}, "
        f"{syn['config']['n_steps']} steps × {syn['config']['restarts']} restarts)",
        fontsize=14,
        fontweight="bold",
    )
    ax = fig.add_subplot(gs[0])
    for r, traj in enumerate(syn["trajectories"]):
        ax.plot(range(1, len(traj) + 1), traj, lw=2, label=f"restart {r}")
    real_max = syn.get("real_max")
    if real_max:
        ax.axhline(real_max, color="black", ls="--", label=f"real max {real_max:.3g}")
    rand = syn.get("random_activations") or []
    if rand:
        ax.axhline(max(rand), color="gray", ls=":", label=f"random-input max {max(rand):.3g}")
    ax.set_xlabel("step")
    ax.set_ylabel("pre-activation at last token")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(gs[1])
    ax.set_axis_off()
    ax.set_title("best sequences (feature read at the last token)", loc="left")
    seqs = syn["sequences"]
    n = max(len(seqs), 1)
    for i, s in enumerate(seqs):
        y = 1.0 - (i + 0.5) / n
        ratio = s.get("ratio_to_real_max")
        head = (
            f"act {s['activation']:.3g}"
            + (f" ({ratio:.2f}× real max)" if ratio is not None else "")
            + f"   ppl {s['perplexity']:.3g}"
        )
        ax.text(0.0, y + 0.18 / n, head, transform=ax.transAxes, va="center", fontsize=10, parse_math=False)
        acts = [0.0] * (len(s["tokens"]) - 1) + [max(s["activation"], 0.0)]
        _highlight_row(
            ax, s["tokens"], acts, max(s["activation"], 1e-9), y - 0.18 / n, len(s["tokens"]) - 1, x0=0.0
        )
    return _save(fig, Path(out_dir) / f"feature_{feature}_synthetic.png")


# The whole-analysis plots live in summary_plots; re-exported so `analysis_plots.X` keeps working.
from saekit.viz.summary_plots import comparison_png, statistics_real_png, summary_real_png  # noqa: E402

__all__ = [
    "comparison_png",
    "feature_real_png",
    "feature_synthetic_png",
    "show_token",
    "statistics_real_png",
    "summary_real_png",
]
