"""`saekit browse <image sweep folder>`: the sweep's numbers and labelled contact sheet on one page, with
every string from the sweep escaped."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from PIL import Image

from saekit.cli import main as cli
from saekit.viz.browser.sweep_page import is_sweep_folder

EVIL = "<script>alert(1)</script>&"


def _row(v: float) -> dict:
    return {"faithful_success": v, "ci": [v - 0.1, v + 0.1], "n": 12, "success": v + 0.2}


def _sweep(folder, target: str = "red") -> None:
    doc = {
        "config": {"factor": "colour", "model": EVIL, "sae": "s", "conditioning": "pooled"},
        "test": {
            "sae": _row(0.51),
            "diffmean": _row(0.25),
            "prompting": _row(0.9),
            "unsteered": _row(0.0),
            "sae_minus_diffmean": {"difference": 0.26, "ci": [0.1, 0.4]},
        },  # fmt: skip
        "per_target": [
            {
                "target": target,
                "features": [3],
                "chosen": {
                    "sae": {"method": "clamp", "strength": 8, "window": "all", "train": 0.7},
                    "diffmean": {"method": "additive", "strength": 2, "window": "late", "train": 0.5},
                },
            }
        ],  # fmt: skip
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(doc))
    rows = [
        {"row": i, "arm": arm, "target": target} for i, arm in enumerate(("unsteered", "prompting", "sae"))
    ]
    (folder / "contact.json").write_text(json.dumps(rows))
    Image.new("RGB", (64, 24)).save(folder / "contact.png")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_browse_builds_the_sweep_page_with_numbers_labels_and_no_live_markup(tmp_path):
    folder = tmp_path / "sweep"
    _sweep(folder, target=EVIL)
    assert is_sweep_folder(folder) and not is_sweep_folder(tmp_path)
    assert cli(["browse", str(folder)]) == 0
    page = (folder / "browser" / "index.html").read_text()
    p = _Collect()
    p.feed(page)
    assert "script" not in p.tags  # the hostile target and model name stay text
    text = "".join(p.text)
    assert EVIL in text  # shown, as text
    for needle in (
        "0.51 [0.41, 0.61]",
        "+0.26 [+0.10, +0.40]",
        "clamp x8 all (train 0.70)",
        "pooled CLIP vector",
    ):
        assert needle in text, needle
    labels = [t for t in p.text if t.startswith(EVIL + ": ")]
    assert [lab.split(": ", 1)[1] for lab in labels] == ["unsteered", "prompting", "sae"]
    assert (folder / "browser" / "contact.png").read_bytes() == (folder / "contact.png").read_bytes()


def test_an_analysis_folder_still_gets_the_feature_browser(tmp_path):
    folder = tmp_path / "sweep"
    _sweep(folder)
    (folder / "analysis.json").write_text("{}")  # an analysis folder wins: not a sweep page
    assert not is_sweep_folder(folder)


def test_browse_shows_a_concept_sweep_with_its_choices_and_escapes_the_concept(tmp_path):
    """A `--concept` sweep (CLIP judge; no per-target records, one `chosen` per arm) is a sweep folder too;
    its hostile concept name stays text."""
    folder = tmp_path / "concept"
    folder.mkdir()
    doc = {
        "config": {"concept": EVIL, "model": "m", "sae": "s", "conditioning": "text"},
        "test": {"sae": _row(0.79), "diffmean": _row(0.67), "prompting": _row(1.0), "unsteered": _row(0.0),
                 "sae_minus_diffmean": {"difference": 0.12, "ci": [-0.12, 0.33]}},
        "chosen": {"sae": {"config": "sae:additive:4:all:cond", "train": 0.67},
                   "diffmean": {"config": "diffmean:additive:1:all:cond", "train": 0.33}},
        "features": [161],
    }  # fmt: skip
    (folder / "results.json").write_text(json.dumps(doc))
    assert is_sweep_folder(folder)
    assert cli(["browse", str(folder)]) == 0
    p = _Collect()
    p.feed((folder / "browser" / "index.html").read_text())
    text = "".join(p.text)
    assert "script" not in p.tags and EVIL in text
    for needle in ("0.79 [0.69, 0.89]", "+0.12 [-0.12, +0.33]", "sae:additive:4:all:cond (0.67)", "f161",
                   "T5 token embeddings"):  # fmt: skip
        assert needle in text, needle
    assert "Per target" not in text
