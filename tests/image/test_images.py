"""Image corpora and caption files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from saekit.data.images import load_captions, load_images, skimage_samples, to_rgb_uint8
from saekit.errors import CorpusError


def test_skimage_samples_are_rgb_uint8_with_stable_ids():
    items = skimage_samples()
    assert len(items) >= 10
    assert [i.id for i in items] == list(range(len(items)))
    assert all(i.pixels.dtype == np.uint8 and i.pixels.ndim == 3 and i.pixels.shape[-1] == 3 for i in items)
    assert items[0].source == "skimage:astronaut"
    assert len(load_images("skimage", limit=3)) == 3


def test_folder_images_sorted_recursive(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((4, 5, 3), 7, np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.full((6, 6), 200, np.uint8)).save(tmp_path / "sub" / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    items = load_images(tmp_path)
    assert [i.source.split("/")[-1] for i in items] == ["b.png", "a.png"]  # sorted by full path
    assert items[0].pixels.shape == (4, 5, 3) and int(items[0].pixels[0, 0, 0]) == 7
    assert items[1].pixels.shape == (6, 6, 3) and int(items[1].pixels[0, 0, 2]) == 200


def test_to_rgb_handles_float_grey_and_rgba():
    assert to_rgb_uint8(np.array([[0.0, 1.0]]))[0, 1].tolist() == [255, 255, 255]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert to_rgb_uint8(rgba).shape == (2, 2, 3)
    with pytest.raises(CorpusError, match="shape"):
        to_rgb_uint8(np.zeros((2, 2, 5)))


def test_missing_or_empty_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_images(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no images"):
        load_images(tmp_path)


def test_captions_jsonl_and_csv(tmp_path):
    j = tmp_path / "c.jsonl"
    j.write_text(json.dumps({"caption": "a cat"}) + "\n\n" + json.dumps({"text": "a dog"}) + "\n")
    assert load_captions(j) == ["a cat", "a dog"]
    c = tmp_path / "c.csv"
    c.write_text('id,caption\n1,"red, round ball"\n2,sky\n')
    assert load_captions(c) == ["red, round ball", "sky"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "x"}\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl:1: no caption or text field"):
        load_captions(bad)
    with pytest.raises(CorpusError, match="no caption or text column"):
        (tmp_path / "b.csv").write_text("a,b\n1,2\n")
        load_captions(tmp_path / "b.csv")
    with pytest.raises(CorpusError, match=".jsonl or .csv"):
        (tmp_path / "c.txt").write_text("x")
        load_captions(tmp_path / "c.txt")
