"""The index rows, search text and steering command the site is built from."""

import shlex

from saekit.viz.browser import payload

from .fake_analysis import EVIL_SCRIPT, make_analysis_doc


def test_sparkline_sums_bins_and_scales_to_100():
    assert payload.sparkline({"counts": [1, 1, 2, 2]}, n_bins=2) == [50, 100]
    assert payload.sparkline({"counts": [0, 3, 0]}, n_bins=16) == [0, 100, 0]
    assert payload.sparkline({"counts": []}) is None and payload.sparkline(None) is None


def test_index_rows_cover_all_features_and_mark_analysed_ones():
    doc = make_analysis_doc(20, n_analysed=3)
    rows = payload.index_rows(doc)
    assert [r[0] for r in rows] == list(range(20))
    col = {c: i for i, c in enumerate(payload.INDEX_COLUMNS)}
    assert [r[col["analysed"]] for r in rows[:3]] == [1, 1, 1]
    assert rows[3][col["analysed"]] == 0 and rows[7][col["analysed"]] == 1  # feature 7 is always analysed
    f1 = doc["features"]["1"]
    assert rows[1][col["max"]] == f1["stats"]["max"] and rows[1][col["count"]] == f1["stats"]["count"]
    # an unanalysed feature: values from all_features, count from frequency x rows
    assert rows[5][col["max"]] == doc["all_features"]["max"][5]
    assert rows[5][col["count"]] == round(doc["all_features"]["frequency"][5] * 100_000)
    assert rows[0][col["ratio"]] == 1.2 and rows[1][col["ratio"]] is None


def test_top_tokens_are_the_most_frequent_focus_tokens():
    f = {"top_examples": [{"token": " a"}, {"token": " b"}, {"token": " b"}, {"token": " c"}]}
    assert payload.top_tokens(f, 2) == [" b", " a"]
    assert payload.top_tokens({"top_examples": [{"activation": 1.0, "context": None}]}) == []  # image rows


def test_search_text_holds_each_context_once_lowercased_and_capped():
    ctx = {"tokens": ["The", " Sea"], "activations": [0, 1], "focus": 1}
    f = {"top_examples": [{"context": ctx}, {"context": ctx}], "top_images": [{"caption": "A Cat"}]}
    assert payload.search_text(f) == "the sea\na cat"
    assert payload.search_text(f, limit=4) == "the "


def test_steer_command_quotes_paths_and_names_the_feature():
    doc = make_analysis_doc(10)
    argv = shlex.split(payload.steer_command(doc, 7))
    assert argv[:4] == ["saekit", "steer", "--sae", "runs/my sae"]
    assert argv[argv.index("--feature") + 1] == "7" and "--prompt" in argv
    doc["features"]["3"]["image_grid"] = "grid.png"  # an image analysis steers a diffusion pipeline
    argv = shlex.split(payload.steer_command(doc, 3))
    assert argv[argv.index("--hook-point") + 1] == "model.layers.15" and "--out" in argv
    doc["features"]["3"]["top_images"] = [{"activation": 1.0, "prompt": "digit 1; rm -rf /"}]
    argv = shlex.split(payload.feature_payload(doc, "3", None, {})["steer_command"])
    assert argv[argv.index("--prompt") + 1] == "digit 1; rm -rf /"  # its own prompt, quoted


def test_feature_payload_drops_trajectories_and_keeps_raw_text():
    doc = make_analysis_doc(10)
    p = payload.feature_payload(doc, "0", [{"feature": 2, "cosine": 0.5}], {})
    assert "trajectories" not in p["synthetic"] and p["synthetic"]["sequences"]
    assert p["nearest"] == [{"feature": 2, "cosine": 0.5}]
    p7 = payload.feature_payload(doc, "7", None, {})
    assert p7["top_examples"][0]["context"]["tokens"][2] == " " + EVIL_SCRIPT  # escaping happens later


def test_nearest_from_doc_accepts_dicts_and_pairs():
    assert payload.nearest_from_doc({"nearest": [[3, 0.5]]}) == [{"feature": 3, "cosine": 0.5}]
    assert payload.nearest_from_doc({"nearest": [{"feature": 4, "cosine": 0.1}]}) == [
        {"feature": 4, "cosine": 0.1}
    ]
    assert payload.nearest_from_doc({}) is None
