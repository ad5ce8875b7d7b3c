"""Memory-mapped views of safetensors shards, validated against the manifest.

safetensors is an 8-byte little-endian header length, a JSON header (dtype, shape, byte offsets per
tensor) and the raw data; mapping the data with numpy lets the reader gather random rows without
loading whole shards, and lets us say precisely what is wrong with a truncated or altered file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from saekit.errors import StoreError

_NP = {"F32": np.float32, "BF16": np.uint16, "F16": np.float16, "I32": np.int32, "I64": np.int64}
_SIZES = {"F32": 4, "BF16": 2, "F16": 2, "I32": 4, "I64": 8}
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int32: "I32", torch.float16: "F16"}


class ShardView:
    """Read-only memory-mapped tensors of one shard file.

    With a manifest `entry` holding `sha256`, the file is hashed once before its rows are first read
    (see saekit/data/checksum.py for why then and not at open).
    """

    def __init__(
        self,
        path: Path,
        expected_rows: int,
        expected_d: int,
        acts_dtype: str,
        fix: str,
        *,
        entry: dict | None = None,
        first_row: int = 0,
        target_d: int | None = None,
    ):
        self.path = path
        self.entry = entry or {}
        self.first_row = first_row
        self._checked = "sha256" not in self.entry
        if not path.is_file():
            raise StoreError(
                f"store shard {path} is missing (manifest lists it with {expected_rows} rows). {fix}"
            )
        size = path.stat().st_size
        try:
            with open(path, "rb") as fh:
                (header_len,) = struct.unpack("<Q", fh.read(8))
                if header_len > size - 8:
                    raise ValueError(f"header length {header_len} exceeds file size {size}")
                header = json.loads(fh.read(header_len))
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise StoreError(
                f"store shard {path} is corrupt: unreadable safetensors header ({exc}). {fix}"
            ) from exc
        header.pop("__metadata__", None)
        data_start = 8 + header_len
        self.arrays: dict[str, np.ndarray] = {}
        self.dtypes: dict[str, str] = {}
        for name, info in header.items():
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            if dtype not in _NP or end - begin != int(np.prod(shape, dtype=np.int64)) * _SIZES[dtype]:
                raise StoreError(
                    f"store shard {path}: tensor {name!r} has a bad dtype/shape/offsets {info}. {fix}"
                )
            if data_start + end > size:
                raise StoreError(
                    f"store shard {path} is truncated: tensor {name!r} needs bytes up to {data_start + end}, "
                    f"file has {size}. {fix}"
                )
            self.arrays[name] = (
                np.memmap(path, dtype=_NP[dtype], mode="r", offset=data_start + begin, shape=tuple(shape))
                if end > begin
                else np.zeros(shape, dtype=_NP[dtype])
            )
            self.dtypes[name] = dtype
        acts = self.arrays.get("acts")
        if acts is None or acts.shape != (expected_rows, expected_d) or self.dtypes["acts"] != acts_dtype:
            found = None if acts is None else (list(acts.shape), self.dtypes["acts"])
            raise StoreError(
                f"store shard {path} does not match the manifest: expected acts [{expected_rows}, "
                f"{expected_d}] "
                f"{acts_dtype}, found {found}. {fix}"
            )
        if target_d is not None:  # a paired store: the module's output beside its input
            target = self.arrays.get("target")
            found = None if target is None else (list(target.shape), self.dtypes["target"])
            if found != ([expected_rows, target_d], acts_dtype):
                raise StoreError(
                    f"store shard {path} does not match the paired manifest: expected target "
                    f"[{expected_rows}, {target_d}] {acts_dtype}, found {found}. {fix}"
                )
        for name, arr in self.arrays.items():
            if arr.shape[0] != expected_rows:
                raise StoreError(
                    f"store shard {path}: {name} has {arr.shape[0]} rows, manifest says "
                    f"{expected_rows}. {fix}"
                )

    def check(self) -> None:
        """Refuse the shard if its bytes differ from what the harvest wrote (once per process)."""
        if self._checked:
            return
        from saekit.data.checksum import bad_rows, damage, describe_rows, repair_hint

        problem = damage(self.path, self.entry)
        if problem is not None:
            rows = bad_rows(self.arrays["acts"], self.dtypes["acts"] == "BF16")
            raise StoreError(
                f"store shard {self.path} {problem}; {describe_rows(rows, self.first_row)}. Nothing was "
                f"read from it. {repair_hint(self.path.parent, self.path.name)}"
            )
        self._checked = True

    def rows(self, name: str, index: np.ndarray | slice) -> torch.Tensor:
        """Rows of tensor `name` (a copy), as torch; bf16 stored as uint16 bits is viewed back."""
        self.check()
        arr_all = self.arrays[name]
        picked = (
            arr_all[index] if isinstance(index, slice) else np.take(arr_all, index, axis=0)
        )  # take: ~2x fancy
        # a slice of a memmap is a read-only view: copy it; fancy indexing already made a fresh array
        arr = np.array(picked) if isinstance(index, slice) else np.ascontiguousarray(picked)
        t = torch.from_numpy(arr)
        return t.view(torch.bfloat16) if self.dtypes[name] == "BF16" else t
