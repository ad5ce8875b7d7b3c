"""The training methods `train_throughput.py` compares, each run in its own process (see there).

Every method trains a TopK SAE (d_sae latents, k active, Adam, unit-norm decoder) on the same rows in the
same order with the same LR schedule, and returns tokens/s (timed after `warmup` steps), FVU on held-out
rows and the number of latents that never fire on them. The data is either synthetic (sparse codes over a
hidden dictionary) or a real activation store split into train rows and the last `heldout` rows.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

D_SAE, K = 9216, 32


@dataclass(frozen=True)
class Setup:
    """What every method trains on; identical across the child processes of one benchmark run."""

    data: str
    """`synthetic` or an activation store folder."""
    batch: int
    epochs: float
    warmup: int
    """Steps not timed (first-touch allocations, thread pools)."""
    lr: float | None
    """Peak LR; None = `2e-4 / sqrt(d_sae / 2**14)` (saekit's and sparsify's rule)."""
    schedule: str
    """`constant` or `saekit` (50 warm-up steps, flat, linear decay over the last 20%)."""
    max_steps: int | None = None
    """Stop (and skip the FVU) after this many steps: for methods too slow to run the whole schedule."""


def load_rows(setup: Setup, heldout: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, held-out rows) as fp32."""
    if (
        setup.data == "synthetic"
    ):  # one draw (one hidden dictionary), split: held-out rows are in-distribution
        x = make_synthetic(200_000 + heldout, seed=0)
        return x[:200_000], x[200_000:]
    from saekit.data.store import ActivationStore

    store = ActivationStore.open(setup.data)
    n = len(store)
    x = torch.cat([b for b in store.iter_batches(32768, shuffle=False, dtype=torch.float32)])
    return x[: n - heldout], x[n - heldout :]


def make_synthetic(n_rows: int, seed: int = 0, d_in: int = 576) -> torch.Tensor:
    """24 active (of 4096) ground-truth unit directions per row, squared-uniform weights, offset, noise."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(4096, d_in, generator=g)
    dictionary /= dictionary.norm(dim=-1, keepdim=True)
    offset = torch.randn(d_in, generator=g) * 2
    rows = []
    for lo in range(0, n_rows, 4096):
        b = min(4096, n_rows - lo)
        idx = torch.randint(0, 4096, (b, 24), generator=g)
        vals = torch.rand(b, 24, generator=g).pow(2) * 10
        x = torch.nn.functional.embedding_bag(idx, dictionary, per_sample_weights=vals, mode="sum")
        rows.append(x + offset + 0.3 * torch.randn(b, d_in, generator=g))
    return torch.cat(rows)


def total_steps(setup: Setup, n_train: int) -> int:
    return max(1, int(setup.epochs * (n_train // setup.batch)))


def peak_lr(setup: Setup) -> float:
    from saekit.train.config import default_lr

    return setup.lr if setup.lr is not None else default_lr(D_SAE)


def lr_at(setup: Setup, step: int, steps: int) -> float:
    from saekit.train.schedule import lr_factor

    if setup.schedule == "constant":
        return peak_lr(setup)
    return peak_lr(setup) * lr_factor(step, steps, 50, "linear", 0.8)


def batches(setup: Setup, train: torch.Tensor, steps: int):
    """The trainer's order: epoch e is `TensorSource(train)` shuffled with seed e, drop_last."""
    from saekit.train import TensorSource

    src = TensorSource(train)
    done, epoch = 0, 0
    while True:
        for x in src.iter_batches(setup.batch, shuffle=True, seed=epoch, drop_last=True):
            if done == steps:
                return
            yield x
            done += 1
        epoch += 1


def fvu(x: torch.Tensor, recon: torch.Tensor) -> float:
    return float((x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


class Timer:
    """Wall clock from the end of step `warmup` to the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.steps = warmup, time.perf_counter(), 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.t0 = time.perf_counter()

    def tokens_per_s(self, batch: int) -> float:
        return (self.steps - self.warmup) * batch / (time.perf_counter() - self.t0)


def run_saekit(setup: Setup, train, heldout, encoder: str, **overrides) -> dict:
    import tempfile

    from saekit.train import TensorSource, TrainConfig, Trainer
    from saekit.train.metrics import read_log

    steps = total_steps(setup, len(train))
    if setup.max_steps:
        steps = min(steps, setup.max_steps)
    extra = {"lr_warmup_steps": 0, "lr_decay": "none"} if setup.schedule == "constant" else {}
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(
            arch="topk",
            k=K,
            d_sae=D_SAE,
            batch_size=setup.batch,
            total_tokens=steps * setup.batch,
            lr=peak_lr(setup),
            log_every=setup.warmup,
            checkpoint_every=10**9,
            quiet=True,
            init_sample=4096,
            encoder=encoder,
        )
        cfg = TrainConfig.flat(**{**kw, **extra, **overrides})
        res = Trainer(cfg, TensorSource(train), out=tmp).run()
        log = read_log(f"{tmp}/train_log.jsonl")
    t_w = next(r["elapsed_s"] for r in log if r["step"] == setup.warmup)
    tps = (steps - setup.warmup) * setup.batch / (log[-1]["elapsed_s"] - t_w)
    sae = res.sae.eval()
    with torch.no_grad():
        recon = torch.cat([sae(c).recon for c in heldout.split(4096)])
        fired = torch.cat([(sae.encode(c) > 0).any(0, keepdim=True) for c in heldout.split(4096)]).any(0)
    out = {"tokens_per_s": tps, "fvu": fvu(heldout, recon), "never_fired": int((~fired).sum())}
    screen = getattr(sae, "screen", None)
    if screen is not None:
        out.update(screen.summary())
    choice = getattr(sae, "encoder_choice", None)
    out["encoder"] = choice.path if choice is not None else encoder
    return out


def run_dense(setup: Setup, train, heldout) -> dict:
    """Plain PyTorch TopK SAE: dense latents, autograd everywhere, Adam, unit-norm decoder."""
    from torch import nn

    torch.manual_seed(0)
    d = train.shape[1]
    W_dec = torch.randn(D_SAE, d)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    p = {
        "W_enc": nn.Parameter(W_dec.T.clone()),
        "b_enc": nn.Parameter(torch.zeros(D_SAE)),
        "W_dec": nn.Parameter(W_dec),
        "b_dec": nn.Parameter(train[:4096].mean(0)),
    }
    opt = torch.optim.Adam(p.values(), lr=peak_lr(setup))

    def forward(x):
        pre = ((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]).relu()
        vals, idx = pre.topk(K, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter(-1, idx, vals) @ p["W_dec"] + p["b_dec"]

    steps = total_steps(setup, len(train))
    run_steps = min(steps, setup.max_steps or steps)
    timer = Timer(setup.warmup)
    for step, x in enumerate(batches(setup, train, run_steps)):
        for group in opt.param_groups:
            group["lr"] = lr_at(setup, step, steps)
        loss = (forward(x) - x).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            W = p["W_dec"]
            dirs = W / W.norm(dim=-1, keepdim=True)
            W.grad -= (W.grad * dirs).sum(-1, keepdim=True) * dirs
        opt.step()
        with torch.no_grad():
            W /= W.norm(dim=-1, keepdim=True)
        timer.tick()
    out = {"tokens_per_s": timer.tokens_per_s(setup.batch), "fvu": None, "never_fired": None}
    if run_steps == steps:
        with torch.no_grad():
            out["fvu"] = fvu(heldout, torch.cat([forward(c) for c in heldout.split(4096)]))
    return out


def _import_sparsify():
    import importlib.util
    import types

    if "sparsify" not in sys.modules:  # a second call (several variants in one process) reuses it
        spec = importlib.util.find_spec("sparsify")
        pkg = types.ModuleType("sparsify")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["sparsify"] = pkg  # skip sparsify/__init__ (it imports the trainer -> datasets)
    from sparsify.config import SparseCoderConfig
    from sparsify.sparse_coder import SparseCoder

    return SparseCoder, SparseCoderConfig


def run_sparsify(
    setup: Setup, train, heldout, dead_threshold: int = 10_000_000, encoder_scale: float | None = None
) -> dict:
    """sparsify 1.3.3's SparseCoder with its trainer's step: b_dec = first batch mean, loss FVU + aux-k/32
    (its 10M-token dead threshold), gradient projection, Adam, renormalisation; our schedule and order.
    `dead_threshold` and `encoder_scale` (encoder rows rescaled to that norm at init) are for ablations."""
    SparseCoder, SparseCoderConfig = _import_sparsify()
    torch.manual_seed(0)
    d = train.shape[1]
    sae = SparseCoder(d, SparseCoderConfig(num_latents=D_SAE, k=K), device="cpu", dtype=torch.float32)
    if encoder_scale is not None:
        with torch.no_grad():
            w = sae.encoder.weight
            w.mul_(encoder_scale / w.norm(dim=-1, keepdim=True))
    opt = torch.optim.Adam(sae.parameters(), lr=peak_lr(setup))
    since_fired = torch.zeros(D_SAE, dtype=torch.long)
    steps = total_steps(setup, len(train))
    timer = Timer(setup.warmup)
    for step, x in enumerate(batches(setup, train, steps)):
        if step == 0:
            with torch.no_grad():
                sae.b_dec.copy_(x.mean(0))
        for group in opt.param_groups:
            group["lr"] = lr_at(setup, step, steps)
        out = sae(x, dead_mask=since_fired > dead_threshold)
        (out.fvu + out.auxk_loss / 32).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
        since_fired += x.shape[0]
        since_fired[out.latent_indices.flatten()] = 0
        timer.tick()
    fired = torch.zeros(D_SAE, dtype=torch.bool)
    recons = []
    with torch.no_grad():
        for c in heldout.split(4096):
            o = sae(c)
            recons.append(o.sae_out)
            fired[o.latent_indices[o.latent_acts > 0]] = True
    return {
        "tokens_per_s": timer.tokens_per_s(setup.batch),
        "fvu": fvu(heldout, torch.cat(recons)),
        "never_fired": int((~fired).sum()),
    }


def run_floor(setup: Setup, train) -> dict:
    """The bare fp32 encoder matmul `[batch, d_in] x [d_in, d_sae]` (+ bias): tokens/s if it were all.

    Into a preallocated output, so the floor is the GEMM alone (a fresh output also pays the OS for
    zeroed pages: ~10% more here; saekit reuses its buffer, `saekit.sae.scratch`)."""
    x = train[: setup.batch].contiguous()
    W = torch.randn(x.shape[1], D_SAE) / x.shape[1] ** 0.5
    b = torch.zeros(D_SAE)
    out = torch.empty(x.shape[0], D_SAE)
    times = []
    for i in range(setup.warmup + 25):  # 25 timed: one matmul is short, a stray interruption is not
        t0 = time.perf_counter()
        torch.addmm(b, x, W, out=out)
        if i >= setup.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"tokens_per_s": setup.batch / times[len(times) // 2], "fvu": None, "never_fired": None}
