"""A small image analysis.json, built by hand, to show the browser's image-feature page.

    python docs/results/browser_image_example.py --out /tmp/digits_analysis
    python docs/results/browser_screenshots.py --analysis /tmp/digits_analysis --name browser_image

Not an SAE analysis: the ten "features" are class templates on the testbed's data (scikit-learn's 8x8
digits, cut into 2x2 patches like the testbed). Feature c's activation on a patch is
relu(<patch - mean patch, class-c mean patch - mean patch>), on an image the sum over its patches
(the template's match with the whole image) ranks the top images; each shows its best patch's
activation (the statistics are over patches, as in a patch-token store) and the heatmap all patch
terms. So the numbers
are real and the top images of feature c are mostly digits of class c, but the fields are written by
this script following the PREAMBLE's analysis.json image convention (`image_grid`, `heatmaps`,
`top_images`), not by `saekit analyze`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SCALE = 12  # 8x8 digits drawn as 96x96


def patch_acts(x_N88: np.ndarray, y_N: np.ndarray) -> np.ndarray:
    """[N, classes, 4, 4]: each class template's activation on each 2x2 patch of each image."""
    p = x_N88.reshape(-1, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(len(x_N88), 4, 4, 4)
    mean = p.mean(0)
    tmpl = np.stack([p[y_N == c].mean(0) - mean for c in range(10)])  # [C, 4, 4, 4]
    return np.maximum(0, np.einsum("nijp,cijp->ncij", p - mean, tmpl))


def tile(img88: np.ndarray, heat44: np.ndarray | None = None, focus: int | None = None) -> Image.Image:
    g = (255 * (1 - (0.55 if heat44 is not None else 1.0) * img88 / 16)).astype(np.uint8)
    im = Image.fromarray(g).resize((8 * SCALE, 8 * SCALE), Image.NEAREST).convert("RGB")
    if heat44 is not None:
        h = np.kron(heat44 / (heat44.max() or 1), np.ones((2 * SCALE, 2 * SCALE)))
        red = np.array(im, dtype=float)
        red = red * (1 - 0.6 * h[..., None]) + 0.6 * h[..., None] * np.array([230, 60, 20])
        im = Image.fromarray(red.astype(np.uint8))
    if focus is not None:
        r, c = divmod(focus, 4)
        ImageDraw.Draw(im).rectangle(
            [c * 2 * SCALE, r * 2 * SCALE, (c + 1) * 2 * SCALE - 1, (r + 1) * 2 * SCALE - 1],
            outline=(30, 90, 200),
            width=3,
        )
    return im


def grid_png(tiles: list[Image.Image], labels: list[str], path: Path) -> None:
    w, pad = 8 * SCALE, 6
    out = Image.new("RGB", (3 * (w + pad) + pad, 3 * (w + 20 + pad) + pad), "white")
    d = ImageDraw.Draw(out)
    for i, (t, lab) in enumerate(zip(tiles, labels)):
        x, y = pad + (i % 3) * (w + pad), pad + (i // 3) * (w + 20 + pad)
        out.paste(t, (x, y))
        d.text((x + 2, y + w + 4), lab, fill=(40, 40, 40))
    out.save(path)


def feature_entry(c, acts, x, y, out: Path, n_rows: int) -> dict:
    best = acts[:, c].reshape(len(x), -1)  # [N, 16 patches]
    img_act = best.sum(1)
    top = np.argsort(-img_act)[:9]
    vals = best[best > 0]
    edges = list(np.geomspace(vals.min(), vals.max(), 25))
    counts = np.histogram(vals, bins=edges)[0].tolist()
    top_images, tiles, labels = [], [], []
    for n in top:
        pos = int(best[n].argmax())
        rel = f"images/doc_{n}.png"
        if not (out / rel).exists():
            tile(x[n]).save(out / rel)
        top_images.append(
            {
                "doc_id": int(n),
                "activation": float(best[n, pos]),
                "image": rel,
                "position": pos,
                "class": int(y[n]),
            }
        )
        tiles.append(tile(x[n], focus=pos))
        labels.append(f"{best[n, pos]:.1f}  class {y[n]}")
    grid = f"feature_{c}_images.png"
    grid_png(tiles, labels, out / grid)
    heatmaps = []
    for i, n in enumerate(top[:3]):
        heatmaps.append(f"feature_{c}_heatmap_{i}.png")
        tile(x[n], acts[n, c]).resize((144, 144), Image.NEAREST).save(out / heatmaps[-1])
    return {
        "index": c,
        "stats": {
            "count": int(len(vals)),
            "frequency": float(len(vals) / n_rows),
            "mean_when_active": float(vals.mean()),
            "max": float(vals.max()),
            "quantiles": {str(q): float(np.quantile(vals, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)},
        },
        "histogram": {"edges": [float(e) for e in edges], "counts": counts, "scale": "log"},
        "top_images": top_images,
        "image_grid": grid,
        "heatmaps": heatmaps,
    }


def main() -> None:
    from sklearn.datasets import load_digits

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/digits_analysis")
    out = Path(ap.parse_args().out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    bunch = load_digits()
    x, y = bunch.images, bunch.target
    acts = patch_acts(x, y)
    n_rows = len(x) * 16
    feats = {str(c): feature_entry(c, acts, x, y, out, n_rows) for c in range(10)}
    flat = acts.transpose(1, 0, 2, 3).reshape(10, -1)
    doc = {
        "schema_version": 1,
        "format": "saekit.analysis",
        "sae": {"path": None, "arch": "class templates (not an SAE)", "d_in": 4, "d_sae": 10, "k": None},
        "source": {
            "kind": "store",
            "modality": "image",
            "model": "testbed digits (8x8, 2x2 patches)",
            "hook_point": "pixels",
            "n_rows": n_rows,
        },  # fmt: skip
        "config": {"note": "hand-built example, see docs/results/browser_image_example.py"},
        "summary": {"n_rows": n_rows, "n_features": 10, "n_dead": 0, "dead_features": [], "n_selected": 10},
        "all_features": {
            "frequency": [float((f > 0).mean()) for f in flat],
            "mean_when_active": [float(f[f > 0].mean()) for f in flat],
            "max": [float(f.max()) for f in flat],
        },
        "features": feats,
    }
    (out / "analysis.json").write_text(json.dumps(doc))
    for c in range(10):
        classes = [t["class"] for t in feats[str(c)]["top_images"]]
        print(f"feature {c}: classes of top images {classes}")
    print(f"wrote {out / 'analysis.json'}")


if __name__ == "__main__":
    main()
