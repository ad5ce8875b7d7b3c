"""One loader everywhere: every verb opens SAEs through `saekit.load`, so every format works in each."""

from __future__ import annotations

import re
from pathlib import Path

import saekit
from saekit.steer.session import load_sae_folder

from .conftest import acts, assert_close
from .test_saelens import base_tensors, write_saelens

PACKAGE = Path(saekit.__file__).parent
#: the native loader itself, the SAE.load classmethod, and the format dispatcher may call load_sae
ALLOWED = {"sae/io.py", "sae/base.py", "sae/__init__.py", "formats/__init__.py", "__init__.py"}


def test_no_module_bypasses_saekit_load():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ALLOWED:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bload_sae\s*\(|import load_sae\b", line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, (
        "open SAEs with saekit.load (any format), not the native-only load_sae:\n" + "\n".join(offenders)
    )


def test_steer_eval_and_sweep_loader_accepts_a_foreign_sae(tmp_path):
    t = base_tensors(seed=2)
    folder = write_saelens(tmp_path / "sl", t, architecture="topk", k=4)
    sae = load_sae_folder(folder)  # what steer, sweep and image steer call
    x = acts()
    assert sae.arch == "topk"
    assert_close(sae.reconstruct(x), saekit.load(folder).reconstruct(x), "same SAE through both entry points")
