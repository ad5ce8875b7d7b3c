"""What the browser shows, computed from an analysis document (pure: no files, no torch).

The index needs a little about every feature (frequency, max, mean when active, a sparkline, its most
frequent top tokens); search needs the text of each feature's top contexts; a feature page needs the
feature's whole entry. These are kept apart so the index of a 10k+-feature analysis loads small
chunks, text for search is loaded only when a text query is typed, and each feature's data is read
only by its own page.
"""

from __future__ import annotations

import shlex
from collections import Counter
from typing import Any

SPARK_BINS = 16
"""Bars in an index sparkline (the feature's histogram re-binned)."""
SEARCH_TEXT_CHARS = 1500
"""Characters of context text kept per feature for text search (bounds the search data size)."""
IMAGE_FIELDS = ("image_grid", "heatmaps", "timestep_plot", "top_images")

# index row layout (a list per feature keeps the index files small); the pages read these names
INDEX_COLUMNS = ("id", "frequency", "max", "mean", "analysed", "spark", "tokens", "ratio", "count")


def sparkline(histogram: dict | None, n_bins: int = SPARK_BINS) -> list[int] | None:
    """A histogram's counts summed into at most `n_bins` groups, scaled to 0..100 (None: no histogram)."""
    counts = list((histogram or {}).get("counts") or [])
    if not counts:
        return None
    n = len(counts)
    groups = min(n_bins, n)
    sums = [sum(counts[g * n // groups : (g + 1) * n // groups]) for g in range(groups)]
    top = max(sums) or 1
    return [round(100 * s / top) for s in sums]


def top_tokens(feature: dict, n: int = 4) -> list[str]:
    """The feature's most frequent focus tokens among its top examples (ties: first seen first)."""
    examples = feature.get("top_examples") or []
    c = Counter(str(e["token"]) for e in examples if e.get("token") is not None)  # image rows: no token
    return [t for t, _ in c.most_common(n)]


def search_text(feature: dict, limit: int = SEARCH_TEXT_CHARS) -> str:
    """Lower-cased text of the feature's distinct top contexts (and image captions), for substring search."""
    seen: list[str] = []
    examples = list(feature.get("top_examples") or [])
    for bucket in feature.get("bucket_examples") or []:
        examples += bucket.get("examples") or []
    for e in examples:
        ctx = e.get("context") or {}
        text = "".join(str(t) for t in ctx.get("tokens") or [e.get("token", "")])
        if text and text not in seen:
            seen.append(text)
    for im in feature.get("top_images") or []:
        for key in ("caption", "prompt"):
            if im.get(key) and str(im[key]) not in seen:
                seen.append(str(im[key]))
    return "\n".join(seen).lower()[:limit]


def _ratio(feature: dict) -> float | None:
    comp = feature.get("comparison") or {}
    if comp.get("ratio_to_real_max") is not None:
        return comp["ratio_to_real_max"]
    seqs = (feature.get("synthetic") or {}).get("sequences") or []
    return seqs[0].get("ratio_to_real_max") if seqs else None


def index_rows(doc: dict) -> list[list[Any]]:
    """One row per feature (every feature `all_features` covers, plus the analysed ones), by id."""
    feats = doc.get("features") or {}
    allf = doc.get("all_features") or {}
    n_rows = (doc.get("summary") or {}).get("n_rows")
    ids = set(range(len(allf.get("frequency") or []))) | {int(k) for k in feats}
    rows = []
    for j in sorted(ids):
        f = feats.get(str(j))
        st = (f or {}).get("stats") or {}

        def pick(name: str, arr: str, j: int = j, st: dict = st):
            if st.get(name) is not None:
                return st[name]
            vals = allf.get(arr) or []
            return vals[j] if j < len(vals) else None

        freq = pick("frequency", "frequency")
        count = st.get("count")
        if count is None and freq is not None and n_rows:
            count = round(freq * n_rows)
        row = [j, freq, pick("max", "max"), pick("mean_when_active", "mean_when_active")]
        row += [1 if f is not None else 0, sparkline((f or {}).get("histogram"))]
        row += [top_tokens(f) if f else [], _ratio(f) if f else None, count]
        rows.append(row)
    return rows


def is_image_analysis(doc: dict) -> bool:
    """An analysis of an image / diffusion SAE (image fields present, or the source says so)."""
    src = doc.get("source") or {}
    if str(src.get("modality", "")).lower() == "image" or src.get("kind") in ("clip", "flux", "diffusion"):
        return True
    return any(any(f.get(k) for k in IMAGE_FIELDS) for f in (doc.get("features") or {}).values())


def steer_command(doc: dict, feature: int, image: bool | None = None, prompt: str | None = None) -> str:
    """The `saekit steer` command line that steers with `feature` (the user edits the prompt).
    `image`: whether this is an image analysis (None: look; pass it when building many pages)."""
    sae = (doc.get("sae") or {}).get("path") or "SAE_FOLDER"
    src = doc.get("source") or {}
    argv = ["saekit", "steer", "--sae", str(sae)]
    if is_image_analysis(doc) if image is None else image:
        if src.get("model"):
            argv += ["--model", str(src["model"])]
        if src.get("hook_point"):
            argv += ["--hook-point", str(src["hook_point"])]
        argv += ["--feature", str(feature), "--method", "clamp", "--strength", "4max"]
        argv += ["--prompt", prompt or "a photo of a cat", "--out", f"steer_{feature}.png"]
    else:
        argv += ["--feature", str(feature), "--method", "clamp", "--strength", "4max"]
        argv += ["--prompt", "Write a short poem about the sea.", "--max-new-tokens", "40"]
    return " ".join(shlex.quote(a) for a in argv)


def nearest_from_doc(feature: dict) -> list[dict] | None:
    """Nearest features by decoder cosine when the analysis already lists them."""
    raw = feature.get("nearest") or feature.get("neighbours") or feature.get("nearest_features")
    if not raw:
        return None
    out = []
    for item in raw:
        if isinstance(item, dict) and "feature" in item:
            out.append({"feature": int(item["feature"]), "cosine": item.get("cosine")})
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append({"feature": int(item[0]), "cosine": float(item[1])})
    return out


def feature_payload(
    doc: dict, key: str, nearest: list[dict] | None, images: dict, image: bool | None = None
) -> dict:
    """Everything one feature page shows. `images` maps image fields to site-relative paths."""
    f = dict(doc["features"][key])
    syn = f.get("synthetic")
    if syn:  # optimiser trajectories are for plots, not for the page
        f["synthetic"] = {k: v for k, v in syn.items() if k != "trajectories"}
    for k in IMAGE_FIELDS:
        f.pop(k, None)
    f.update(images)
    f["index"] = int(key)
    f["nearest"] = nearest
    tops = doc["features"][key].get("top_images") or [{}]  # steer an image feature from a prompt it fires on
    f["steer_command"] = steer_command(doc, int(key), image, tops[0].get("prompt") or tops[0].get("caption"))
    return f


def meta(doc: dict, n_index: int, analysed: list[int], *, index: int, text: int, feature: int) -> dict:
    """Site-wide facts every page reads first (chunk sizes: rows / features per data file)."""
    return {
        "sae": doc.get("sae") or {},
        "source": doc.get("source") or {},
        "summary": doc.get("summary") or {},
        "n_index_rows": n_index,
        "index_chunk": index,
        "text_chunk": text,
        "feature_chunk": feature,
        "analysed": analysed,
        "columns": list(INDEX_COLUMNS),
        "image": is_image_analysis(doc),
    }
