"""Nothing silently wrong: a shard changed in place, truncated or missing is refused, naming the
shard, the row and the fix, instead of being trained on or skipped."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from saekit.data import ActivationStore, StoreWriter
from saekit.data.store import verify_store
from saekit.errors import StoreError

D, ROWS, SHARD = 4, 30, 8


@pytest.fixture()
def store(tmp_path) -> Path:
    g = torch.Generator().manual_seed(0)
    with StoreWriter(tmp_path / "s", {"model": "m", "hook_point": "h", "d": D}, shard_rows=SHARD) as w:
        for u in range(3):
            w.add(
                torch.randn(10, D, generator=g), {"doc_id": torch.full((10,), u, dtype=torch.int32)}, unit=u
            )
    return tmp_path / "s"


def _poke_nan(shard: Path, local_row: int) -> None:
    """Overwrite one row of `acts` with NaN in place (same size), reading the safetensors header by hand."""
    raw = shard.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    begin, _ = json.loads(raw[8 : 8 + n])["acts"]["data_offsets"]
    arr = np.memmap(shard, dtype=np.float32, mode="r+", offset=8 + n + begin, shape=(SHARD, D))
    arr[local_row] = np.nan
    arr.flush()


def test_manifest_records_size_and_sha256_per_shard(store):
    import hashlib

    m = json.loads((store / "manifest.json").read_text())
    assert len(m["shards"]) == 4
    for e in m["shards"]:
        data = (store / e["file"]).read_bytes()
        assert e["bytes"] == len(data) and e["sha256"] == hashlib.sha256(data).hexdigest()
    assert verify_store(store) == {"rows": ROWS, "shards": 4, "bytes": sum(e["bytes"] for e in m["shards"])}


def test_nan_written_in_place_is_refused_on_first_read_naming_shard_row_and_fix(store):
    shard = store / "shard_00001.safetensors"
    size = shard.stat().st_size
    _poke_nan(shard, 5)
    assert shard.stat().st_size == size
    st = ActivationStore.open(store)  # open checks sizes only (fast); the hash runs on first read
    with pytest.raises(StoreError) as err:
        next(st.iter_batches(ROWS, shuffle=True))
    msg = str(err.value)
    assert "shard_00001.safetensors" in msg and "local row 5 (store row 13)" in msg and "--repair" in msg
    with pytest.raises(StoreError, match=r"shard_00001.*row 5"):
        verify_store(store)
    # rows of intact shards still read (each shard is checked on its own)
    assert ActivationStore.open(store).shards[0].rows("acts", slice(0, 2)).shape == (2, D)


def test_truncated_shard_is_refused_on_open(store):
    shard = store / "shard_00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-16])
    with pytest.raises(StoreError, match=r"shard_00002.*bytes.*--repair"):
        ActivationStore.open(store)


def test_missing_shard_is_refused_on_open(store):
    (store / "shard_00003.safetensors").unlink()
    with pytest.raises(StoreError, match=r"shard_00003.*missing.*--repair"):
        ActivationStore.open(store)


def test_bytes_changed_without_nan_are_refused_too(store):
    shard = store / "shard_00000.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0x01  # a flipped low mantissa bit: finite, plausible, wrong
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="changed in place.*cannot be named"):
        ActivationStore.open(store).sample(ROWS)
