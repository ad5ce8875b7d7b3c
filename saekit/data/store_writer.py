"""`StoreWriter`: append activations to a sharded store; every shard and manifest write is atomic.

The manifest is rewritten after each shard, so a killed harvest leaves a valid, incomplete store:
re-running the same harvest resumes after the last listed shard, and because shard boundaries fall
every `shard_rows` rows the finished store is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saekit.atomic import save_tensors_atomic, write_json_atomic
from saekit.data.checksum import file_sha256, rewind_to_first_bad
from saekit.data.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    STORE_DTYPES,
    TARGET,
    identity_diff,
    is_paired,
    read_manifest,
    shard_name,
)
from saekit.errors import NonFiniteError, ShapeError, StoreError

TOKENS_FILE = "tokens.safetensors"


def _meta_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.is_floating_point() else torch.int32


class StoreWriter:
    """Write `acts [n, d]` plus per-row metadata (`doc_id`, `position`, `token_id`, optional `timestep`).

    A paired store (`manifest_fields` with `"paired": True` and `d_out`) also takes each row's target,
    `meta["target"] [n, d_out]` (stored in the activations' dtype, side by side with `acts` in every shard).
    """

    def __init__(
        self,
        folder: str | Path,
        manifest_fields: dict[str, Any],
        shard_rows: int = 32768,
        *,
        resume: bool = True,
        overwrite: bool = False,
        repair: bool = False,
    ):
        if shard_rows < 1:
            raise StoreError(f"shard_rows must be >= 1, found {shard_rows}")
        self.folder = Path(folder)
        self.fields = dict(manifest_fields)
        self.fields.setdefault("dtype", "float32")
        self.fields["shard_rows"] = shard_rows
        if self.fields["dtype"] not in STORE_DTYPES:
            raise StoreError(f"store dtype {self.fields['dtype']!r} is not one of {STORE_DTYPES}")
        if "d" not in self.fields:
            raise StoreError("manifest_fields must include 'd' (the activation width)")
        self.d = int(self.fields["d"])
        self.paired = is_paired(self.fields)
        if self.paired and not isinstance(self.fields.get("d_out"), int):
            raise StoreError("a paired store's manifest_fields must include 'd_out' (the target width)")
        self.shard_rows = shard_rows
        self.storage_dtype = getattr(torch, self.fields["dtype"])
        self._buffer: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []
        self._buffered = 0
        self._units: list[
            tuple[int, int, int]
        ] = []  # (unit, first row offset in unit, rows) per buffered chunk
        self.resume_cursor: tuple[int, int] | None = None
        """(unit, rows of that unit already stored) after the last committed shard, as given to add()."""
        self.shards: list[dict[str, Any]] = []
        self.complete = False
        self.resumed = False
        self.progress: dict[str, Any] = {}
        """The producer's own resume notes (e.g. row counts per round), kept until the store is complete."""
        self._open(resume=resume, overwrite=overwrite, repair=repair)

    # -- setup ---------------------------------------------------------------------------------
    def _wipe(self) -> None:
        for path in list(self.folder.glob("shard_*.safetensors")) + [
            self.folder / MANIFEST,
            self.folder / TOKENS_FILE,
        ]:
            if path.exists():
                path.unlink()

    def _open(self, *, resume: bool, overwrite: bool, repair: bool = False) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / MANIFEST).exists():
            try:
                old = read_manifest(self.folder)
            except StoreError:
                if not overwrite:
                    raise
                old = None
            if old is not None and repair and not overwrite:
                old = rewind_to_first_bad(self.folder, old)
            if old is not None:
                diff = identity_diff(self.fields, old)
                if diff:
                    if not overwrite:
                        raise StoreError(
                            f"{self.folder} already holds a different activation store; differing fields "
                            f"(found in folder, requested): {diff}. Use another --out folder or --overwrite"
                        )
                elif old.get("complete") and not overwrite:
                    self.shards, self.complete = list(old["shards"]), True
                    return
                elif resume and not overwrite:
                    self.shards, self.resumed = list(old["shards"]), True
                    self.progress = dict(old.get("progress") or {})
                    cursor = old.get("resume_cursor")
                    self.resume_cursor = tuple(cursor) if cursor is not None else None
                    self._check_listed_shards()
                    return
                elif not overwrite:
                    raise StoreError(
                        f"{self.folder} holds an interrupted store; pass resume=True (default) or "
                        "overwrite=True"
                    )
            self._wipe()
        elif any(self.folder.glob("shard_*.safetensors")) and not overwrite:
            raise StoreError(
                f"{self.folder} has shard files but no {MANIFEST}; delete them or pass --overwrite"
            )
        else:
            self._wipe()
        self._write_manifest()

    def _check_listed_shards(self) -> None:
        for entry in self.shards:
            path = self.folder / entry["file"]
            if not path.is_file() or path.stat().st_size != entry["bytes"]:
                raise StoreError(
                    f"cannot resume {self.folder}: shard {entry['file']} is missing or altered "
                    f"(expected {entry['bytes']} bytes); start again with --overwrite"
                )

    # -- writing -------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Rows committed to disk (what a resumed harvest skips)."""
        return sum(int(s["count"]) for s in self.shards)

    def manifest(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            **self.fields,
            "count": self.count,
            "complete": self.complete,
            "resume_cursor": None if self.complete else self.resume_cursor,
            "progress": None if self.complete else self.progress,
            "shards": self.shards,
        }

    def _write_manifest(self) -> None:
        write_json_atomic(self.folder / MANIFEST, self.manifest())

    def add(
        self, acts: torch.Tensor, meta: dict[str, torch.Tensor], *, unit: int = 0, offset: int = 0
    ) -> None:
        """Buffer rows `acts [n, d]` with `meta[name] [n]`; full shards are written as they fill.

        `unit`/`offset` say where these rows come from in the caller's deterministic stream (e.g.
        batch 12, starting at its 3rd kept row); after each shard the manifest records the cursor of
        the next unwritten row so an interrupted producer knows where to restart.
        """
        if self.complete:
            raise StoreError(f"store {self.folder} is already complete; nothing more can be added")
        if acts.ndim != 2 or acts.shape[1] != self.d:
            raise ShapeError(
                f"store {self.folder}: expected activations [n, {self.d}], found {list(acts.shape)}"
            )
        meta = dict(meta)
        target = meta.pop(TARGET, None)
        if self.paired != (target is not None):
            need = "needs meta['target'] [n, d_out] with every batch"
            if not self.paired:
                need = "is not paired, yet meta['target'] was given"
            raise StoreError(f"store {self.folder}: this store {need}")
        if target is not None and tuple(target.shape) != (acts.shape[0], self.fields["d_out"]):
            raise ShapeError(
                f"store {self.folder}: expected targets [{acts.shape[0]}, {self.fields['d_out']}], "
                f"found {list(target.shape)}"
            )
        for name, value in meta.items():
            if value.shape != (acts.shape[0],):
                raise ShapeError(
                    f"store {self.folder}: meta {name!r} must be [{acts.shape[0]}], found {list(value.shape)}"
                )
        before = set(self._buffer[0][1]) - {TARGET} if self._buffer else set(meta)
        if before != set(meta):
            raise StoreError(
                f"store {self.folder}: meta fields changed from {sorted(before)} to {sorted(meta)}"
            )
        stored = acts.detach().to(self.storage_dtype)
        self._refuse_non_finite(stored, meta)
        rows = {k: v.detach().to(_meta_dtype(v)) for k, v in meta.items()}
        if target is not None:
            rows[TARGET] = target.detach().to(self.storage_dtype).contiguous()
            self._refuse_non_finite(rows[TARGET], meta, what="target")
        self._buffer.append((stored.contiguous(), rows))
        self._buffered += acts.shape[0]
        self._units.append((unit, offset, acts.shape[0]))
        while self._buffered >= self.shard_rows:
            self._flush(self.shard_rows)

    def _refuse_non_finite(
        self, stored: torch.Tensor, meta: dict[str, torch.Tensor], what: str = "activation"
    ) -> None:
        bad_rows = (~torch.isfinite(stored)).any(dim=1)
        n_bad = int(bad_rows.sum())
        if n_bad == 0:
            return
        rows = bad_rows.nonzero().flatten()[:5].tolist()
        where = ", ".join(
            "row "
            + str(r)
            + "".join(
                f" {k}={meta[k][r].item()}"
                for k in ("doc_id", "position", "token_id", "timestep")
                if k in meta
            )
            for r in rows
        )
        raise NonFiniteError(
            f"store {self.folder}: {n_bad} of {stored.shape[0]} {what} rows contain NaN/inf "
            f"(after casting to {self.fields['dtype']}); first: {where}. Nothing was written for this batch; "
            f"check the model dtype (try --dtype float32) or exclude those positions"
        )

    def _flush(self, n: int) -> None:
        acts = torch.cat([a for a, _ in self._buffer])
        meta = {k: torch.cat([m[k] for _, m in self._buffer]) for k in self._buffer[0][1]}
        head = {"acts": acts[:n], **{k: v[:n] for k, v in meta.items()}}
        rest_n = acts.shape[0] - n
        self._buffer = [(acts[n:], {k: v[n:] for k, v in meta.items()})] if rest_n else []
        self._buffered = rest_n
        self._advance_cursor(n)
        self._write_shard(head)

    def _advance_cursor(self, n: int) -> None:
        """Drop `n` rows from the unit bookkeeping; remember where the next row comes from."""
        while n > 0:
            unit, offset, rows = self._units[0]
            take = min(n, rows)
            n -= take
            self.resume_cursor = (unit, offset + take)
            if take == rows:
                self._units.pop(0)
            else:
                self._units[0] = (unit, offset + take, rows - take)

    def _write_shard(self, tensors: dict[str, torch.Tensor]) -> None:
        name = shard_name(len(self.shards))
        path = self.folder / name
        save_tensors_atomic(path, tensors, metadata={"format": "saekit-activations"})
        self.shards.append(
            {
                "file": name,
                "count": int(tensors["acts"].shape[0]),
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
                "cursor": list(self.resume_cursor) if self.resume_cursor is not None else None,
            }
        )
        self._write_manifest()

    def write_token_table(self, doc_tokens: list[list[int]], folder: Path | None = None) -> None:
        """Save every document's tokens so `store.tokens(doc_id, ...)` can show contexts later
        (into `folder`, default the writer's own; under torchrun the store root)."""
        lengths = torch.tensor([0] + [len(t) for t in doc_tokens], dtype=torch.int64)
        flat = torch.tensor([tok for doc in doc_tokens for tok in doc], dtype=torch.int32)
        save_tensors_atomic(
            (folder or self.folder) / TOKENS_FILE,
            {"doc_tokens": flat, "doc_offsets": torch.cumsum(lengths, 0)},
        )

    def close(self) -> dict[str, Any]:
        """Write the last partial shard and mark the store complete; returns the manifest."""
        if not self.complete:
            if self._buffered:
                self._flush(self._buffered)
            self.complete = True
            self._write_manifest()
        return self.manifest()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
