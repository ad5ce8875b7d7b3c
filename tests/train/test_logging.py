"""`saekit train --log tensorboard --log wandb`: what the sinks hold is what train_log.jsonl holds.

A tiny SAE is trained through the CLI; TensorBoard's event files are read back with TensorBoard's own
`EventAccumulator`, the W&B offline run from its transaction log (`run-<id>.wandb`: the LevelDB log
format of 32 KiB blocks of CRC'd chunks, each record a `wandb_internal_pb2.Record`; wandb ships no
Python reader for it), and both compared with the JSONL records and train_summary.json's final metrics.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from train_helpers import correlated_rows, write_store

from saekit.errors import SAEConfigError
from saekit.train.config import TrainConfig
from saekit.train.metrics import read_log, require_sinks
from saekit.train.state import resume_differences

pytest.importorskip("tensorboard", reason="the log extra is not installed: pip install 'saekit[log]'")
pytest.importorskip("wandb", reason="the log extra is not installed: pip install 'saekit[log]'")

ARGV = ["--k", "2", "--expansion", "2", "--batch-size", "64", "--quiet", "--device", "cpu",
        "--init-sample", "128", "--log-every", "3", "--checkpoint-every", "4", "--prefetch", "0"]  # fmt: skip


@pytest.fixture()
def wandb_env(tmp_path, monkeypatch):
    """W&B's own defaults (no WANDB_MODE: saekit must choose offline), its caches kept in tmp_path."""
    for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))


def _train(tmp_path: Path, *extra: str, out: str = "sae") -> Path:
    from saekit.cli import main

    store = tmp_path / "acts"
    if not store.exists():
        write_store(store, correlated_rows(512, 8, seed=0))
    argv = ["train", "--acts", str(store), "--out", str(tmp_path / out), *ARGV, *extra]
    assert main(argv) == 0
    return tmp_path / out


def _tensorboard(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _wandb_records(path: Path) -> list:
    """Every record of a `.wandb` transaction log: a 7-byte header (`:W&B`, magic, version), then
    32 KiB blocks of chunks `crc32c u32, length u16, type u8` (1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, pos, parts, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, size, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + size], pos + 7 + size
        if kind in (1, 2):
            parts = b""
        parts += chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(parts)
            records.append(rec)
    return records


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _wandb(out: Path) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """(history step -> {key: value}, summary) of the offline runs in `out/wandb` (a resumed training
    adds a run of the same id), read in the order they started."""
    run_id = (out / "wandb" / "saekit_run_id").read_text().strip()
    runs = [_wandb_records(p) for p in out.glob(f"wandb/offline-run-*/run-{run_id}.wandb")]
    assert runs, f"no offline W&B run {run_id} under {out / 'wandb'}"
    started = [next(r.run.start_time.ToNanoseconds() for r in recs if r.HasField("run")) for recs in runs]
    history: dict[int, dict[str, float]] = {}
    summary: dict[str, float] = {}
    for _, records in sorted(zip(started, runs), key=lambda pair: pair[0]):
        for rec in records:
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                items = rec.history.item
                history[rec.history.step.num] = {_item_key(i): json.loads(i.value_json) for i in items}
            elif kind == "summary":
                summary.update({_item_key(i): json.loads(i.value_json) for i in rec.summary.update})
    return history, summary


def _logged(records: list[dict]) -> dict[str, dict[int, float]]:
    """The JSONL as key -> {step: value} (numeric values, `step` being the axis)."""
    out: dict[str, dict[int, float]] = {}
    for rec in records:
        for key, val in rec.items():
            if key != "step" and isinstance(val, (int, float)):
                out.setdefault(key, {})[rec["step"]] = val
    return out


def test_tensorboard_and_wandb_hold_the_jsonl_values(tmp_path, wandb_env):
    out = _train(tmp_path, "--log", "tensorboard", "--log", "wandb")
    logged = _logged(read_log(out / "train_log.jsonl"))
    final = json.loads((out / "train_summary.json").read_text())["final_metrics_on_train_sample"]
    steps = final["steps"]
    assert sorted(logged["fvu"]) == [3, 6, 9, 12, 15, 18, 21, 24] == list(range(3, steps + 1, 3))
    for key in ("loss", "fvu", "l0", "dead_pct", "lr", "tokens_per_s"):
        assert key in logged, f"train_log.jsonl lacks {key}"

    tb = _tensorboard(out / "tb")
    assert {f"train/{k}" for k in logged} <= set(tb)
    for key, by_step in logged.items():
        assert sorted(tb[f"train/{key}"]) == sorted(by_step), f"TensorBoard steps of {key}"
        for step, val in by_step.items():  # TensorBoard keeps float32
            assert tb[f"train/{key}"][step] == pytest.approx(val, rel=1e-6, abs=1e-30), (key, step)
    for key in ("fvu", "l0", "dead_pct", "mse", "shrinkage"):
        assert tb[f"final/{key}"] == {steps: pytest.approx(final[key], rel=1e-6, abs=1e-30)}, key

    history, summary = _wandb(out)
    assert sorted(history) == sorted(logged["fvu"])
    for key, by_step in logged.items():
        for step, val in by_step.items():  # W&B keeps the JSON number: equal to the last bit
            assert history[step][f"train/{key}"] == val, (key, step)
    for key in ("fvu", "l0", "dead_pct", "mse", "shrinkage", "tokens_trained"):
        assert summary[f"final/{key}"] == final[key], key


def test_resumed_run_logs_each_step_once(tmp_path, wandb_env):
    """A run interrupted after step 10 (checkpoint at 8) resumes: TensorBoard drops the interrupted run's
    steps after the checkpoint, as the JSONL does; W&B continues the same run id."""
    from saekit.train import Trainer, open_source

    store = write_store(tmp_path / "acts", correlated_rows(512, 8, seed=0))
    cfg = TrainConfig.flat(k=2, expansion=2, batch_size=64, quiet=True, device="cpu", init_sample=128,
                           log_every=3, checkpoint_every=4, prefetch=0, log=("tensorboard", "wandb"))
    out = tmp_path / "sae"
    Trainer(cfg, open_source(store), out=out).run(stop_after_steps=10)
    first_id = (out / "wandb" / "saekit_run_id").read_text()
    assert sorted(_tensorboard(out / "tb")["train/fvu"]) == [3, 6, 9]
    Trainer(cfg, open_source(store), out=out).run()
    logged = _logged(read_log(out / "train_log.jsonl"))
    tb = _tensorboard(out / "tb")["train/fvu"]
    assert sorted(tb) == sorted(logged["fvu"]) == [3, 6, 9, 12, 15, 18, 21, 24]
    for step, val in logged["fvu"].items():
        assert tb[step] == pytest.approx(val, rel=1e-6)
    assert (out / "wandb" / "saekit_run_id").read_text() == first_id
    assert len(list(out.glob("wandb/offline-run-*"))) == 2  # the interrupted run and its continuation
    history, _ = _wandb(out)
    for step in (12, 15, 18, 21, 24):
        assert history[step]["train/fvu"] == logged["fvu"][step]


@pytest.mark.parametrize(("sink", "module"), [("wandb", "wandb"), ("tensorboard", "torch.utils.tensorboard")])
def test_a_missing_package_refuses_at_start_naming_pip_install(tmp_path, monkeypatch, capsys, sink, module):
    from saekit.cli import main

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(SAEConfigError, match=rf"pip install {sink}`"):
        require_sinks([sink])
    store = write_store(tmp_path / "acts", correlated_rows(256, 8, seed=0))
    argv = ["train", "--acts", str(store), "--out", str(tmp_path / "sae"), *ARGV, "--log", sink]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"--log {sink} needs the '{sink}' package" in err and f"pip install {sink}" in err
    assert not (tmp_path / "sae" / "checkpoint").exists(), "refused before training started"


def test_old_boolean_flags_migrate_and_logging_never_blocks_a_resume():
    old = TrainConfig.flat(k=2).to_dict()
    del old["log"]
    old.update(tensorboard=True, wandb=False)  # a checkpoint written before `log`
    cfg = TrainConfig.from_dict(old)
    assert cfg.log == ("tensorboard",)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # `log` read back as a list
    assert resume_differences(old, cfg.replace(log=("wandb",))) == []
    assert resume_differences(cfg.to_dict(), cfg.replace(log=())) == []
    with pytest.raises(SAEConfigError, match="not a sink"):
        TrainConfig.flat(k=2, log=("mlflow",))
