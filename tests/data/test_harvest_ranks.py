"""torchrun harvest on the CPU (gloo): 2 ranks hold exactly the rows of a 1-process harvest, and a
rank killed mid-harvest resumes to the same store.

The model is a tiny random Llama saved with a character-level tokenizer, loaded by path in every
rank like a user's folder. A `sitecustomize.py` on the ranks' PYTHONPATH injects the crash (rank 1
exits hard after writing its first shard), the way a killed GPU job dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saekit.data import ActivationStore

ROOT = Path(__file__).resolve().parents[2]
DIE = """
import os
if os.environ.get("RANK") == "1" and os.environ.get("SAEKIT_TEST_DIE_AFTER"):
    from saekit.data import store_writer as sw
    original, done = sw.StoreWriter._write_shard, [0]
    def dying(self, tensors):
        if done[0] == int(os.environ["SAEKIT_TEST_DIE_AFTER"]):
            os._exit(3)
        done[0] += 1
        original(self, tensors)
    sw.StoreWriter._write_shard = dying
"""


@pytest.fixture(scope="module")
def tiny_folder(tiny_lm, tmp_path_factory):
    """The suite's tiny Llama (tests/conftest.py) saved with a character-level tokenizer, a corpus and a
    sitecustomize that kills a rank on demand (torchrun ranks load the model by path)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("ranks")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{chr(c): 3 + i for i, c in enumerate(range(32, 91))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tiny_lm.model.save_pretrained(root / "model")
    fast.save_pretrained(root / "model")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(7):
        (corpus / f"d{i}.txt").write_text(
            f"DOC {i}: " + "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. " * (2 + i)
        )
    (root / "inject").mkdir()
    (root / "inject" / "sitecustomize.py").write_text(DIE)
    return root


def _args(root: Path, out: Path) -> list[str]:
    return [
        "harvest",
        "--model",
        str(root / "model"),
        "--hook-point",
        "model.layers.0,model.layers.1",
        "--corpus",
        str(root / "corpus"),
        "--tokens",
        "500",
        "--context-len",
        "32",
        "--batch-size",
        "2",
        "--shard-rows",
        "64",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]


def _run(root: Path, args: list[str], ranks: int, **env) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "saekit", *args]
    if ranks > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            "-m",
            "saekit",
            *args,
        ]
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{root / 'inject'}:{ROOT}", **env)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)


def _by_key(folder: Path) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Rows sorted by (doc_id, position): the multiset of keys and the activations in that order."""
    store = ActivationStore.open(folder)
    acts, metas = zip(*store.iter_rows_with_meta(10_000))
    acts = torch.cat(acts)
    keys = list(
        zip(
            torch.cat([m["doc_id"] for m in metas]).tolist(),
            torch.cat([m["position"] for m in metas]).tolist(),
        )
    )
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [keys[i] for i in order], acts[order]


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def stores(tiny_folder, tmp_path_factory):
    """The same harvest in one process (in this one) and on 2 torchrun ranks."""
    from saekit.commands.harvest import main

    out = tmp_path_factory.mktemp("stores")
    assert main(_args(tiny_folder, out / "one")[1:]) == 0
    two = _run(tiny_folder, _args(tiny_folder, out / "two"), 2)
    assert two.returncode == 0, two.stderr[-3000:]
    return out


@pytest.mark.parametrize("hook", ["model.layers.0", "model.layers.1"])
def test_two_ranks_hold_the_rows_of_one_process(stores, hook):
    keys1, acts1 = _by_key(stores / "one" / hook)
    keys2, acts2 = _by_key(stores / "two" / hook)
    assert len(keys1) == 500 and keys1 == keys2 and len(set(keys1)) == 500
    torch.testing.assert_close(acts2, acts1, rtol=0, atol=0)
    m = ActivationStore.open(stores / "two" / hook).manifest
    assert m["world_size"] == 2 and {e["file"].split("/")[0] for e in m["shards"]} == {
        "rank_00000",
        "rank_00001",
    }


def test_a_killed_rank_resumes_to_the_same_store(tiny_folder, stores, tmp_path):
    # rank 1 dies after its first shard (rank 0 is then stopped by torchrun); the rerun resumes each rank
    cut = _run(tiny_folder, _args(tiny_folder, tmp_path / "cut"), 2, SAEKIT_TEST_DIE_AFTER="1")
    assert cut.returncode != 0 and not (tmp_path / "cut" / "model.layers.0" / "manifest.json").exists()
    rank1 = ActivationStore.open(tmp_path / "cut" / "model.layers.0" / "rank_00001", allow_incomplete=True)
    assert len(rank1.manifest["shards"]) == 1 and not rank1.manifest["complete"]
    again = _run(tiny_folder, _args(tiny_folder, tmp_path / "cut"), 2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _files(tmp_path / "cut") == _files(stores / "two")
