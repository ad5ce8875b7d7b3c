"""The built site: its files, what they may contain, images, rebuilds and the command."""

import json
import re

import pytest
from PIL import Image

from saekit.cli import main as cli_main
from saekit.errors import SaekitError
from saekit.viz.browser import BrowserConfig, build_site

from .fake_analysis import EVIL_FEATURE, EVIL_IMG, EVIL_SCRIPT, make_analysis_doc


def _data_value(path):
    """The value a data file hands to saekitData, parsed back as JSON."""
    text = path.read_text(encoding="ascii")
    m = re.fullmatch(r'saekitData\("(\w+)","(\w+)",(.*)\);\n', text, re.S)
    assert m, text[:200]
    return json.loads(m.group(3))


def test_site_layout_and_data_round_trip(write_analysis, tmp_path):
    doc = make_analysis_doc(30, n_analysed=10)
    index = build_site(
        write_analysis(doc),
        BrowserConfig(out=str(tmp_path / "site"), index_chunk=8, feature_chunk=4, quiet=True),
    )
    site = index.parent
    assert index.name == "index.html" and (site / "feature.html").is_file()
    assert sorted(p.name for p in (site / "data").glob("index_*.js")) == [f"index_{i}.js" for i in range(4)]
    rows = [r for i in range(4) for r in _data_value(site / "data" / f"index_{i}.js")]
    assert [r[0] for r in rows] == list(range(30))
    meta = _data_value(site / "data" / "meta.js")
    assert meta["n_index_rows"] == 30 and meta["analysed"] == list(range(10))
    assert meta["feature_chunk"] == 4  # pages of 10 features in 3 files: 4 + 4 + 2
    parts = [_data_value(site / "data" / f"f_{i}.js") for i in range(3)]
    assert [sorted(map(int, p)) for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert not (site / "data" / "f_3.js").exists()
    f7 = parts[1][str(EVIL_FEATURE)]
    assert f7["top_examples"][0]["context"]["tokens"][2:5] == [" " + EVIL_SCRIPT, " and ", EVIL_IMG]


def test_no_data_file_contains_markup_and_pages_make_no_external_requests(write_analysis, tmp_path):
    build_site(write_analysis(make_analysis_doc(12)), BrowserConfig(out=str(tmp_path / "s"), quiet=True))
    for p in (tmp_path / "s" / "data").rglob("*.js"):
        text = p.read_text(encoding="ascii")  # ascii: U+2028/2029 and all non-ASCII are escaped
        assert "<" not in text and ">" not in text and "&" not in text, p
    for p in (tmp_path / "s").rglob("*"):
        if p.suffix in (".html", ".css"):  # no remote (or protocol-relative) URL; JS: next test
            assert not re.search(r"(https?:)?//[a-z0-9]", p.read_text(), re.I), p
    for name in ("index.html", "feature.html"):
        html = (tmp_path / "s" / name).read_text()
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "<script>" not in html  # no inline script: every script is a file the CSP allows
        assert all(s.startswith(("assets/", "data/")) for s in re.findall(r'src="([^"]+)"', html))
        # pages are assembled from the shared frame: one head, the page's own script, no marker left
        assert html.count("<head>") == 1 and "saekit-frame" not in html and "{title}" not in html
        assert f'src="assets/{name.split(".")[0]}.js"' in html
        assert html.index("</head>") < html.index("<main>")


def test_js_files_reference_no_remote_urls(write_analysis, tmp_path):
    build_site(write_analysis(make_analysis_doc(3)), BrowserConfig(out=str(tmp_path / "s"), quiet=True))
    for p in (tmp_path / "s" / "assets").glob("*.js"):
        urls = re.findall(r"https?://[^\s\"']+", p.read_text())
        assert urls == ["http://www.w3.org/2000/svg"] or urls == [], (p, urls)  # SVG namespace, not a request


def test_images_are_copied_and_missing_ones_reported(write_analysis, tmp_path, capsys):
    doc = make_analysis_doc(4)
    folder = write_analysis(doc)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "grid.png")
    doc["features"]["2"].update(
        image_grid="grid.png",
        heatmaps=["grid.png", "missing.png"],
        top_images=[{"doc_id": 1, "activation": 2.0, "image": str(folder / "grid.png"), "position": 3}],
    )
    (folder / "analysis.json").write_text(json.dumps(doc))
    build_site(folder, BrowserConfig(out=str(tmp_path / "s")))
    f2 = _data_value(tmp_path / "s" / "data" / "f_0.js")["2"]
    assert f2["image_grid"].startswith("img/") and f2["heatmaps"] == [f2["image_grid"]]
    assert f2["top_images"][0]["image_src"] == f2["image_grid"]  # the same file is copied once
    assert (tmp_path / "s" / f2["image_grid"]).read_bytes() == (folder / "grid.png").read_bytes()
    assert "1 referenced image(s) not found" in capsys.readouterr().out


def test_rebuild_replaces_the_site_and_refuses_foreign_folders(write_analysis, tmp_path):
    folder = write_analysis(make_analysis_doc(10))
    build_site(folder, BrowserConfig(feature_chunk=2, quiet=True))  # default: ANALYSIS_DIR/browser
    assert (folder / "browser" / "data" / "f_4.js").is_file()
    doc = make_analysis_doc(10, n_analysed=2)
    (folder / "analysis.json").write_text(json.dumps(doc))
    build_site(folder, BrowserConfig(feature_chunk=2, quiet=True))
    assert not (folder / "browser" / "data" / "f_4.js").exists()  # stale pages gone
    assert not list(folder.glob(".browser*"))  # no temp folders left
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(SaekitError, match="not a saekit browser site"):
        build_site(folder, BrowserConfig(out=str(other), quiet=True))
    (other / "index.html").write_text("<p>my own website</p>")  # an index.html alone is not enough
    with pytest.raises(SaekitError, match="not a saekit browser site"):
        build_site(folder, BrowserConfig(out=str(other), quiet=True))
    assert (other / "notes.txt").exists()
    with pytest.raises(SaekitError, match="not a saekit browser site"):  # nor the analysis folder itself
        build_site(folder, BrowserConfig(out=str(folder), quiet=True))
    assert (folder / "analysis.json").is_file()


def test_missing_analysis_is_a_clear_error(tmp_path):
    with pytest.raises(SaekitError, match="no analysis.json"):
        build_site(tmp_path)


def test_browse_command_builds_and_prints_the_path(write_analysis, tmp_path, capsys):
    folder = write_analysis(make_analysis_doc(5))
    assert cli_main(["browse", str(folder), "--out", str(tmp_path / "web"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"file://{(tmp_path / 'web' / 'index.html').resolve()}" in out
    assert cli_main(["browse", str(tmp_path / "nothing")]) == 1
