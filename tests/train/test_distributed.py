"""Data-parallel training under torchrun (gloo, 2 CPU processes) against a single-process run.

The torchrun launches cost most of their time in starting three Python processes, so the CI tests use
two launches in all: the CLI path (2 ranks vs 1 at the same global batch), and one script that checks
an interrupted 2-rank run resumes bit-exactly and that several stores are split across the ranks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import correlated_rows, write_store

from saekit.sae.io import load_sae
from saekit.train import TrainConfig, Trainer, open_source
from saekit.train import distributed as dd
from saekit.train.multi import output_folders, split_stores

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
FLAGS = dict(
    arch="topk", k=4, expansion=4, batch_size=128, total_tokens=128 * 16, seed=3, init_sample=256,
    lr_warmup_steps=2, log_every=4, checkpoint_every=5, dead_tokens=256, device="cpu", quiet=True,
)  # fmt: skip


def _argv(flags: dict) -> list[str]:
    out = []
    for k, v in flags.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


def _torchrun(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _same(a: dict, b: dict, exact: bool) -> None:
    for name, t in a.items():
        if exact:
            assert torch.equal(t, b[name]), name
        else:
            torch.testing.assert_close(b[name], t, rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return [write_store(root / f"layer{i}", correlated_rows(1024, 16, seed=i)) for i in (1, 2)]


# -- pieces, in one process -------------------------------------------------------------------------
def test_context_from_torchrun_environment(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert dd.from_env() == dd.SINGLE
    with pytest.raises(dd.DistributedError, match="torchrun --nproc_per_node"):
        dd.from_env(required=True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = dd.from_env(required=True)
    assert (ctx.rank, ctx.world, ctx.local_rank, ctx.active, ctx.is_main) == (3, 4, 1, True, False)


def test_rank_slices_partition_the_global_batch():
    x = torch.arange(24.0).view(12, 2)
    parts = [dd.rank_slice(x, dd.DistContext(r, 3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), x)
    with pytest.raises(Exception, match="multiple of 3"):
        dd.check_batch(10, dd.DistContext(0, 3))
    assert dd.split_work(list("abcde"), dd.DistContext(1, 2)) == ["b", "d"]


def test_store_list_and_output_folders(tmp_path):
    assert split_stores("a/x, b/y") == ["a/x", "b/y"]
    with pytest.raises(Exception, match="comma-separated"):
        split_stores("a,,b")
    assert output_folders(["s/acts"], tmp_path) == [tmp_path]
    assert output_folders(["a/l5", "b/l10"], tmp_path) == [tmp_path / "l5", tmp_path / "l10"]
    assert output_folders(["a/acts", "b/acts"], tmp_path) == [tmp_path / "0_acts", tmp_path / "1_acts"]


# -- torchrun launches --------------------------------------------------------------------------------
def test_two_ranks_match_one_process_cli(stores, tmp_path):
    """`torchrun -m saekit train` with 2 ranks = one process at the same global batch, to float rounding;
    the dead-latent counters (all-reduced) agree exactly; only rank 0 logs and prints."""
    args = ["-m", "saekit", "train", "--acts", str(stores[0]), "--out", str(tmp_path / "two")]
    proc = _torchrun(args + _argv(FLAGS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"fvu"') == 1  # rank 0 prints its one JSON line
    one = Trainer(TrainConfig.flat(**FLAGS), open_source(stores[0]), out=tmp_path / "one").run()
    _same(one.sae.state_dict(), load_sae(tmp_path / "two").state_dict(), exact=False)
    from safetensors.torch import load_file

    def counters(folder):
        state = json.loads((folder / "checkpoint" / "state.json").read_text())
        return load_file(folder / "checkpoint" / state["tensors"])["dead.since_fired"]

    assert torch.equal(counters(tmp_path / "one"), counters(tmp_path / "two"))
    log2 = [json.loads(x) for x in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    log1 = [json.loads(x) for x in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log2] == [r["step"] for r in log1] == [4, 8, 12, 16]
    assert [r["fvu"] for r in log2] == pytest.approx([r["fvu"] for r in log1], rel=1e-4)
    assert json.loads((tmp_path / "two" / "train_summary.json").read_text())["ranks"] == 2


RELU = dict(arch="relu", resample_every=4, sparsity_coefficient=100.0, lr=0.05, sparsity_warmup_frac=0.0)
SCRIPT = """
import json, sys, torch
from saekit.train import TrainConfig, Trainer, open_source, train
from saekit.train import distributed as dd
flags, store_a, store_b, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
RELU = dict(flags, **json.loads(sys.argv[5]))
cfg = TrainConfig.flat(**flags)
ctx = dd.from_env(required=True)
src = open_source(store_a)
Trainer(cfg, src, out=out + "/full", dist=ctx).run()
part = Trainer(cfg, src, out=out + "/killed", dist=ctx).run(stop_after_steps=7)  # checkpoint at step 5
assert not part.finished
Trainer(cfg, src, out=out + "/killed", dist=ctx).run()  # a fresh trainer on every rank, as after a kill
Trainer(TrainConfig.flat(**RELU), src, out=out + "/relu", dist=ctx).run()  # resampling from the global batch
train(cfg.replace(acts=store_a + "," + store_b, out=out + "/multi"))  # one store per rank; ends the group
"""


def test_two_rank_resume_is_bit_exact_and_stores_split_across_ranks(stores, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    proc = _torchrun(
        [str(script), json.dumps(FLAGS), str(stores[0]), str(stores[1]), str(tmp_path), json.dumps(RELU)]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same(load_sae(tmp_path / "full").state_dict(), load_sae(tmp_path / "killed").state_dict(), exact=True)
    relu = TrainConfig.flat(**{**FLAGS, **RELU})
    one = Trainer(relu, open_source(stores[0]), out=tmp_path / "relu1").run()
    assert '"resampled": ' in (tmp_path / "relu" / "train_log.jsonl").read_text()  # the path is exercised
    _same(one.sae.state_dict(), load_sae(tmp_path / "relu").state_dict(), exact=False)
    for store in stores:  # each rank trained one store alone: identical to a plain single-process run
        ref = Trainer(TrainConfig.flat(**FLAGS), open_source(store), out=tmp_path / "ref" / store.name).run()
        _same(ref.sae.state_dict(), load_sae(tmp_path / "multi" / store.name).state_dict(), exact=True)


@pytest.mark.slow  # a real SIGKILL needs a run long enough to be killed mid-way (~1-2 min on 2 cores)
def test_sigkilled_two_rank_run_resumes_to_the_one_process_result(stores, tmp_path):
    flags = dict(FLAGS, total_tokens=128 * 400, checkpoint_every=10, log_every=50)
    args = ["-m", "saekit", "train", "--acts", str(stores[0]), "--out", str(tmp_path / "two")] + _argv(flags)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    state = tmp_path / "two" / "checkpoint" / "state.json"
    deadline = time.time() + 180
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["step"] >= 50):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, at once
    proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 50 <= killed_at < 400, "the run finished before it could be killed"
    done = _torchrun(args, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    one = Trainer(TrainConfig.flat(**flags), open_source(stores[0]), out=tmp_path / "one").run()
    _same(one.sae.state_dict(), load_sae(tmp_path / "two").state_dict(), exact=False)


# -- batch-dependent and thresholded architectures under torchrun ---------------------------------------
class _SplitGroup:
    """Two 'ranks' in one process: `cat` and `min` see both halves, as the gloo collectives would."""

    def __init__(self, parts: list[torch.Tensor]):
        self.parts, self.world = parts, len(parts)

    def cat(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.parts)

    def min(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.parts).min(0).values


def test_batchtopk_selects_over_the_global_batch_however_it_is_split():
    """The k*B kept values of a batch split in two equal shares are those of the whole batch."""
    from saekit.sae.batchtopk import batch_threshold

    g = torch.Generator().manual_seed(0)
    acts = torch.randn(8, 50, generator=g).relu()
    n_keep = 3 * 8
    whole = batch_threshold(acts.flatten(), n_keep)
    assert whole == acts.flatten().topk(n_keep).values.min()  # the n_keep-th largest value
    halves = [a.flatten() for a in acts.chunk(2)]
    tops = [h.topk(n_keep).values for h in halves]
    for h in halves:  # each rank computes the same global threshold from its own half
        assert batch_threshold(h, n_keep, _SplitGroup(tops)) == whole
    assert int((acts >= whole).sum()) == n_keep
    # a rank holding every large value: the global selection still takes them all from it
    skew = torch.cat([torch.full((4, 50), 5.0), torch.zeros(4, 50)])
    parts = [p.flatten().topk(n_keep).values for p in skew.chunk(2)]
    assert batch_threshold(skew[4:].flatten(), n_keep, _SplitGroup(parts)) == 5.0


ARCH_RUNS = {
    "batchtopk": dict(arch="batchtopk", k=4),
    "jumprelu": dict(arch="jumprelu", sparsity_coefficient=1.0, k=None),
    "gated": dict(arch="gated", sparsity_coefficient=1.0, k=None),
}
ARCH_SCRIPT = """
import json, sys
from saekit.train import TrainConfig, Trainer, open_source
from saekit.train import distributed as dd
flags, store, out, runs = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ctx = dd.from_env(required=True)
for name, extra in runs.items():
    cfg = TrainConfig.flat(**{k: v for k, v in dict(flags, **extra).items() if v is not None})
    Trainer(cfg, open_source(store), out=out + "/" + name, dist=ctx).run()
"""


def test_two_ranks_match_one_process_for_batchtopk_jumprelu_gated(stores, tmp_path):
    """BatchTopK (batch-level selection, running threshold), JumpReLU and Gated: 2 gloo ranks = 1
    process at the same global batch and seed (BatchTopK selects over the global batch, not per rank)."""
    script = tmp_path / "arch_job.py"
    script.write_text(ARCH_SCRIPT)
    flags = {k: v for k, v in FLAGS.items() if k != "arch"}
    proc = _torchrun([str(script), json.dumps(flags), str(stores[0]), str(tmp_path), json.dumps(ARCH_RUNS)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, extra in ARCH_RUNS.items():
        cfg = TrainConfig.flat(**{k: v for k, v in dict(flags, **extra).items() if v is not None})
        one = Trainer(cfg, open_source(stores[0]), out=tmp_path / f"{name}_one").run()
        two = load_sae(tmp_path / name)
        _same(one.sae.state_dict(), two.state_dict(), exact=False)
        if name == "batchtopk":  # the threshold estimate, from the global batch's smallest kept value
            assert float(two.threshold) > 0
            torch.testing.assert_close(two.threshold, one.sae.threshold, rtol=1e-5, atol=0)
