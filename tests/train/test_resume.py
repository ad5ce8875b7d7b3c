"""Killing a run and rerunning it reaches bit-identical weights (CPU), in-process and via SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from saekit.train import TensorSource, TrainConfig, Trainer
from saekit.train.trainer import CHECKPOINT_DIR

torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP stalls on a loaded machine


def _data(n=2048, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) + 1.0


def _cfg(arch, **kw):
    base = dict(
        arch=arch,
        k=4,
        expansion=4,
        batch_size=128,
        total_tokens=128 * 30,
        quiet=True,
        checkpoint_every=4,
        log_every=3,
        lr_warmup_steps=3,
        seed=3,
        init_sample=512,
    )
    base.update(kw)
    return TrainConfig.flat(**base)


@pytest.mark.parametrize(
    "arch,extra",
    [
        ("topk", {"dead_tokens": 256}),
        ("relu", {"resample_every": 9}),
        ("batchtopk", {"dead_tokens": 256}),
        ("jumprelu", {}),
    ],
)
def test_interrupt_and_resume_is_bit_exact(tmp_path, arch, extra):
    src = TensorSource(_data())
    cfg = _cfg(arch, **extra, total_tokens=128 * 24)  # 24 steps: one epoch of 16 steps + part of a second
    ref = Trainer(cfg, src, out=tmp_path / "ref").run()
    assert ref.finished and ref.step == 24
    part = Trainer(cfg, src, out=tmp_path / "run").run(stop_after_steps=14)  # last checkpoint at step 12
    assert not part.finished
    assert (tmp_path / "run" / CHECKPOINT_DIR / "state.json").exists()
    resumed = Trainer(cfg, src, out=tmp_path / "run").run()  # a fresh trainer, as after a kill
    assert resumed.finished
    a, b = ref.sae.state_dict(), resumed.sae.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    ref_log = [json.loads(line) for line in (tmp_path / "ref" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [r["step"] for r in ref_log]
    assert [r["fvu"] for r in log] == [r["fvu"] for r in ref_log]


def test_resume_refuses_changed_settings(tmp_path):
    from saekit.errors import CheckpointError

    src = TensorSource(_data())
    Trainer(_cfg("topk"), src, out=tmp_path).run(stop_after_steps=5)
    with pytest.raises(CheckpointError, match="k: checkpoint=4 now=8"):
        Trainer(_cfg("topk", k=8), src, out=tmp_path).run()


SETUP = """
from saekit.train import TensorSource, TrainConfig, Trainer
g = torch.Generator().manual_seed(0)
x = torch.randn(4096, 24, generator=g) @ torch.randn(24, 24, generator=g)
cfg = TrainConfig.flat(arch="topk", k=4, expansion=4, batch_size=128, total_tokens=128 * 60, quiet=True,
                  checkpoint_every=5, log_every=5, seed=1, init_sample=512, dead_tokens=512)
"""
SCRIPT = (
    "import sys, torch\ntorch.set_num_threads(1)\nsys.path.insert(0, {root!r})\n"
    + SETUP
    + "Trainer(cfg, TensorSource(x), out=sys.argv[1]).run()\n"
)


@pytest.mark.slow  # spawns two Python processes (~100 s on a loaded 2-core machine); run with -m slow
def test_sigkill_and_rerun_is_bit_exact(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=root))
    run = lambda out: subprocess.Popen([sys.executable, str(script), str(out)])  # noqa: E731
    ns: dict = {"torch": torch}
    exec(SETUP, ns)  # the uninterrupted reference, in this process (same single thread)
    ref = ns["Trainer"](ns["cfg"], ns["TensorSource"](ns["x"]), out=tmp_path / "ref").run()
    proc = run(tmp_path / "killed")
    state = tmp_path / "killed" / CHECKPOINT_DIR / "state.json"
    deadline = time.time() + 60
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["step"] >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = json.loads(state.read_text())["step"]
    assert 10 <= step_at_kill < 60, "the run finished before it could be killed"
    subprocess.run([sys.executable, str(script), str(tmp_path / "killed")], check=True, timeout=120)
    from saekit.sae.io import load_sae

    a = ref.sae.state_dict()
    b = load_sae(tmp_path / "killed").state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
