"""Write the static feature browser for one analysis folder.

Layout of the site (opens from disk; nothing is fetched from the network):
  index.html, feature.html           static pages (copied from static/, no data inside)
  assets/                            style.css, common.js, index.js, feature.js
  data/meta.js                       site-wide facts (SAE, source, summary, chunk sizes)
  data/index_<k>.js                  index rows, `index_chunk` features per file
  data/text_<k>.js                   context text of analysed features for text search (loaded on demand)
  data/f_<k>.js                      page data of `feature_chunk` analysed features (few files, not
                                     one per feature: 10k small files cost minutes on a busy disk)
  img/                               PNGs the analysis refers to, copied
The site is built in a temporary folder beside `out` and swapped in whole, so a reader never sees
half a site and a rebuild never leaves stale feature files behind.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from saekit.errors import SaekitError
from saekit.viz.browser import payload
from saekit.viz.browser.escape import js_data_call
from saekit.viz.browser.images import ImageCopier

STATIC_PAGES = ("index.html", "feature.html")
STATIC_ASSETS = ("style.css", "common.js", "index.js", "feature.js")


@dataclass(frozen=True)
class BrowserConfig:
    """How the feature browser is built."""

    out: str | None = None
    """Site folder (default: ANALYSIS_DIR/browser)."""
    sae: str | None = None
    """SAE (any format `saekit.load` reads) to compute nearest features by decoder cosine; default:
    the neighbours analysis.json lists, if any."""
    n_nearest: int = 8
    """Nearest features listed per feature page."""
    index_chunk: int = 2000
    """Index rows per data file (the first page shows after the first file loads)."""
    text_chunk: int = 500
    """Analysed features per search-text file."""
    feature_chunk: int = 64
    """Analysed features per page-data file."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        if min(self.index_chunk, self.text_chunk, self.feature_chunk) < 1 or self.n_nearest < 0:
            raise SaekitError("index_chunk, text_chunk and feature_chunk must be >= 1, n_nearest >= 0")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def assemble_page(frame: str, page: str) -> str:
    """A static page = the shared frame (`_frame.html`: head with the CSP, header) with the page's own
    `<title>` and script line, then the page's body. Pages start `<!--saekit-frame` + those two lines +
    `-->`, so the head (and its security policy) is written once for every page."""
    marker, end = "<!--saekit-frame\n", "-->\n"
    if not page.startswith(marker) or end not in page:
        raise ValueError("a browser page must start with its <!--saekit-frame ... --> block")
    own, body = page[len(marker) :].split(end, 1)
    title, script = own.splitlines(keepends=True)
    return frame.replace("{title}", title).replace("{script}", script) + body


def _copy_static(tmp: Path) -> None:
    static = resources.files("saekit.viz.browser") / "static"
    frame = static.joinpath("_frame.html").read_text(encoding="utf-8")
    for name in STATIC_PAGES:
        _write(tmp / name, assemble_page(frame, static.joinpath(name).read_text(encoding="utf-8")))
    for name in STATIC_ASSETS:
        _write(tmp / "assets" / name, static.joinpath(name).read_text(encoding="utf-8"))


def _nearest(doc: dict, keys: list[str], cfg: BrowserConfig) -> dict[int, list[dict] | None]:
    """The neighbours `analyze real` wrote; from the SAE (when given) for features that have none."""
    out = {int(k): payload.nearest_from_doc(doc["features"][k]) for k in keys}
    missing = [j for j, v in out.items() if v is None]
    if cfg.sae and cfg.n_nearest and missing:
        from saekit.viz.browser.neighbours import nearest_from_sae

        out.update(nearest_from_sae(cfg.sae, missing, cfg.n_nearest))
    return out


def _write_data(doc: dict, analysis_dir: Path, tmp: Path, cfg: BrowserConfig) -> ImageCopier:
    keys = sorted(doc.get("features") or {}, key=int)
    rows = payload.index_rows(doc)
    for i, c in enumerate(range(0, max(len(rows), 1), cfg.index_chunk)):
        _write(tmp / "data" / f"index_{i}.js", js_data_call("index", i, rows[c : c + cfg.index_chunk]))
    for i, c in enumerate(range(0, len(keys), cfg.text_chunk)):
        texts = {k: payload.search_text(doc["features"][k]) for k in keys[c : c + cfg.text_chunk]}
        _write(tmp / "data" / f"text_{i}.js", js_data_call("text", i, texts))
    analysed = [int(k) for k in keys]
    meta = payload.meta(
        doc, len(rows), analysed, index=cfg.index_chunk, text=cfg.text_chunk, feature=cfg.feature_chunk
    )
    _write(tmp / "data" / "meta.js", js_data_call("meta", 0, meta))
    nearest = _nearest(doc, keys, cfg)
    images = ImageCopier(analysis_dir, tmp)
    image = meta["image"]
    bar = tqdm(total=len(keys), desc="browser pages", unit="feature", disable=cfg.quiet)
    for i, c in enumerate(range(0, len(keys), cfg.feature_chunk)):
        part = {}
        for k in keys[c : c + cfg.feature_chunk]:
            imgs = images.feature_images(doc["features"][k])
            part[k] = payload.feature_payload(doc, k, nearest.get(int(k)), imgs, image)
        _write(tmp / "data" / f"f_{i}.js", js_data_call("features", i, part))
        bar.update(len(part))
    bar.close()
    return images


def _is_site(folder: Path) -> bool:
    """A folder this module built (its own pages and data), which a rebuild may replace."""
    meta = folder / "data" / "meta.js"
    return (
        (folder / "index.html").is_file() and meta.is_file() and meta.read_text()[:18] == 'saekitData("meta",'
    )


def build_site(analysis_dir: str | Path, cfg: BrowserConfig = BrowserConfig()) -> Path:
    """Build the browser for `analysis_dir/analysis.json`; returns the path of its index.html."""
    from saekit.analysis import report

    analysis_dir = Path(analysis_dir)
    doc = report.load(analysis_dir)
    out = Path(cfg.out) if cfg.out else analysis_dir / "browser"
    if out.exists() and not _is_site(out) and any(out.iterdir()):  # never replace someone's folder
        raise SaekitError(f"{out} exists and is not a saekit browser site; pass an empty or new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _copy_static(tmp)
        images = _write_data(doc, analysis_dir, tmp, cfg)
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if images.missing and not cfg.quiet:
        print(f"browser: {len(images.missing)} referenced image(s) not found, e.g. {images.missing[0]!r}")
    return out / "index.html"
