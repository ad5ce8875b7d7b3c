"""`saekit browse <image sweep folder>`: one static page with a sweep's tables and contact sheet.

An image sweep (`saekit sweep --model <pipeline>`: by factor on the testbed, or by `--concept` with a
CLIP judge) writes results.json, contact.png and contact.json (which arm and target each row of the
sheet shows). This page puts them together so a
person can look at the images beside the numbers: the test table with intervals, the per-target
choices, the judges' agreement when the CLIP judge ran, and the contact sheet with each row labelled.
Every string from the sweep (captions, targets, paths) is HTML-escaped; the page loads nothing from the
network and opens from disk.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from saekit.atomic import write_text_atomic
from saekit.errors import SaekitError

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:80rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f3f3f3}.sheet{display:flex;gap:.5rem;align-items:stretch}
.labels{display:flex;flex-direction:column;font-size:.8rem}.labels div{flex:1;display:flex;align-items:center}
.sheet img{image-rendering:pixelated;width:40rem;height:auto}
"""


def is_sweep_folder(folder: str | Path) -> bool:
    """True for an image sweep's output folder (results.json with per-target records, no analysis.json)."""
    folder = Path(folder)
    if (folder / "analysis.json").is_file() or not (folder / "results.json").is_file():
        return False
    try:
        doc = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and ("per_target" in doc or "chosen" in doc) and "test" in doc


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _ci(row: dict) -> str:
    lo, hi = row.get("ci", (float("nan"), float("nan")))
    return f"{row['faithful_success']:.2f} [{lo:.2f}, {hi:.2f}]"


def sweep_page_html(doc: dict, rows: list[dict], image: str | None) -> str:
    """The page for a sweep's `results.json` document, the contact sheet's row labels and image path."""
    cfg, t = doc.get("config", {}), doc["test"]
    sites = {"pooled": "the pooled CLIP vector", "text": "the T5 token embeddings"}
    site = sites.get(cfg.get("conditioning"), cfg.get("hook_point") or "the SAE's hook point")
    what = cfg.get("factor") or cfg.get("concept", "?")
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>saekit sweep: {_e(what)}</title><style>{_STYLE}</style></head>",
        "<body data-ready='1'>",
        f"<h1>Steering <code>{_e(what)}</code> at {_e(site)}</h1>",
        f"<p>Model <code>{_e(cfg.get('model', '?'))}</code>, SAE <code>{_e(cfg.get('sae', '?'))}</code>. "
        "Faithful success on the test prompts (95% bootstrap interval); each arm's method and strength "
        "were chosen on the train prompts.</p>",
        "<table><tr><th>arm</th><th>faithful success</th><th>target read</th></tr>",
    ]
    for key in ("sae", "diffmean", "lora", "prompting", "unsteered"):
        if key in t and "faithful_success" in t[key]:
            succ = t[key].get("success")
            out.append(f"<tr><td>{_e(key)}</td><td>{_ci(t[key])}</td>"
                       f"<td>{'' if succ is None else f'{succ:.2f}'}</td></tr>")  # fmt: skip
    out.append("</table>")
    d = t.get("sae_minus_diffmean")
    if d:
        lo, hi = d["ci"]
        out.append(f"<p>SAE minus DiffMean (paired): {d['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]</p>")
    if doc.get("per_target"):
        out.append("<h2>Per target</h2><table><tr><th>target</th><th>features</th><th>SAE choice</th>"
                   "<th>DiffMean choice</th></tr>")  # fmt: skip
    for pt in doc.get("per_target", []):
        ch = pt.get("chosen", {})
        cells = [pt.get("target"), ", ".join(f"f{j}" for j in pt.get("features", []))]
        for arm in ("sae", "diffmean"):
            c = ch.get(arm, {})
            cells.append(f"{c.get('method', '')} x{c.get('strength', '')} {c.get('window', '')} "
                         f"(train {c.get('train', float('nan')):.2f})")  # fmt: skip
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    if doc.get("per_target"):
        out.append("</table>")
    if "chosen" in doc:  # a concept sweep: one target, its choices by configuration label
        feats = ", ".join(f"f{j}" for j in doc.get("features", []))
        out.append(f"<p>SAE features: {_e(feats)}. Chosen on train: "
                   + "; ".join(f"{_e(a)} {_e(c.get('config', ''))} ({float(c.get('train', 'nan')):.2f})"
                               for a, c in doc["chosen"].items()) + "</p>")  # fmt: skip
    if "judge_agreement" in t:
        out.append("<h2>CLIP judge vs factor judges (Spearman over train configurations)</h2><ul>")
        for name, a in t["judge_agreement"].items():
            out.append(f"<li>{_e(name)}: {a['spearman']:+.2f} [{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}] "
                       f"(n={int(a['n'])})</li>")  # fmt: skip
        out.append("</ul>")
    if image:
        out.append("<h2>Contact sheet</h2><p>Each row: the first test prompts of one target, as the row "
                   "label says.</p><div class='sheet'><div class='labels'>")  # fmt: skip
        out += [f"<div>{_e(r.get('target', ''))}: {_e(r.get('arm', ''))}</div>" for r in rows]
        out.append(f"</div><img src='{_e(image)}' alt='contact sheet'></div>")
    out.append("</body></html>")
    return "\n".join(out)


def build_sweep_page(folder: str | Path) -> Path:
    """Write FOLDER/browser/index.html (and copy the contact sheet beside it); returns the page's path."""
    folder = Path(folder)
    if not is_sweep_folder(folder):
        raise SaekitError(
            f"{folder} holds no image sweep results.json (from `saekit sweep --model <pipeline>`)"
        )
    doc = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    rows = []
    if (folder / "contact.json").is_file():
        rows = json.loads((folder / "contact.json").read_text(encoding="utf-8"))
    out = folder / "browser"
    out.mkdir(parents=True, exist_ok=True)
    image = None
    if (folder / "contact.png").is_file():
        shutil.copyfile(folder / "contact.png", out / "contact.png")
        image = "contact.png"
    page = out / "index.html"
    write_text_atomic(page, sweep_page_html(doc, rows if isinstance(rows, list) else [], image))
    return page
