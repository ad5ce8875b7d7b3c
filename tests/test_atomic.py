"""Atomic writes: a failure mid-write leaves the old file intact and no temporary files behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from saekit import atomic
from saekit.atomic import atomic_path, save_tensors_atomic, write_json_atomic, write_text_atomic


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_success_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    write_json_atomic(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    write_json_atomic(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert _names(target.parent) == ["out.json"]


def test_exception_inside_context_keeps_old_file(tmp_path):
    target = tmp_path / "f.txt"
    write_text_atomic(target, "old complete content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_text("half-writ")
            raise RuntimeError("boom")
    assert target.read_text() == "old complete content"
    assert _names(tmp_path) == ["f.txt"]


def test_failing_serialiser_mid_write_keeps_old_tensors(tmp_path, monkeypatch):
    target = tmp_path / "w.safetensors"
    save_tensors_atomic(target, {"a": torch.arange(4.0)}, metadata={"v": "1"})

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\x00" * 17)  # partial bytes, then the disk "fills up"
        raise OSError(28, "No space left on device")

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="No space"):
        save_tensors_atomic(target, {"a": torch.zeros(4)})
    assert torch.equal(load_file(str(target))["a"], torch.arange(4.0))
    assert _names(tmp_path) == ["w.safetensors"]


def test_failing_rename_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "c.json"
    write_json_atomic(target, [1, 2, 3])

    def broken_replace(src, dst):
        raise PermissionError("replace refused")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(PermissionError):
        write_json_atomic(target, [4])
    assert json.loads(target.read_text()) == [1, 2, 3]
    assert _names(tmp_path) == ["c.json"]


def test_unserialisable_json_leaves_nothing(tmp_path):
    target = tmp_path / "new.json"
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert _names(tmp_path) == []


def test_killed_process_leaves_old_file_intact(tmp_path):
    """A hard kill (no cleanup runs) mid-write: the target still holds the old complete content."""
    target = tmp_path / "k.txt"
    write_text_atomic(target, "old")
    code = textwrap.dedent(f"""
        import os
        from saekit.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("partial")
            os._exit(9)
    """)
    rc = subprocess.run([sys.executable, "-c", code], check=False).returncode
    assert rc == 9
    assert target.read_text() == "old"
    leftovers = [n for n in _names(tmp_path) if n != "k.txt"]
    assert all(n.startswith(".k.txt.") and n.endswith(".tmp") for n in leftovers)  # hidden, recognisable


def test_written_file_has_normal_permissions(tmp_path):
    target = tmp_path / "perm.txt"
    umask = os.umask(0o022)
    os.umask(umask)
    write_text_atomic(target, "x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
