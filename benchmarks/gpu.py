"""GPU benchmark, one command, one table: harvest and TopK training throughput on CUDA, side by side.

    python benchmarks/gpu.py                         # on a machine with a CUDA GPU (the full table)
    python benchmarks/gpu.py --device cpu --smoke    # tiny sizes on the CPU: checks every code path

Rows, all measured in this one run:
- harvest: SmolLM2-135M to layer 15, saekit's harvest (tokenise, forward to the hook, filter, host
  copies, store writes) vs a bare truncated forward (the same model stopped after layer 15, nothing kept);
- train: TopK SAEs at d_in 576 and 4096, 16x and 32x latents, k 32, batch 4096, fp32 and bf16 autocast:
  saekit's Trainer (data from host memory through its prefetch thread) vs a dense PyTorch TopK SAE
  (autograd everywhere) and vs sparsify's SparseCoder when `sparsify` is importable;
- tokens/s after warm-up steps (the device synchronised before each clock read) and peak GPU memory.

Without a GPU (and without --device cpu) it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

K = 32
HOOK_LAYER = 15


@dataclass
class Row:
    section: str
    config: str
    method: str
    precision: str
    tokens_per_s: float | None = None
    peak_mib: float | None = None
    note: str = ""
    ratios: dict[str, float] = field(default_factory=dict)


# -- timing helpers ---------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


class StepClock:
    """`tick(step)` after each step; tokens/s over the steps after `warmup`."""

    def __init__(self, device: torch.device, warmup: int, rows_per_step: int):
        self.device, self.warmup, self.rows = device, warmup, rows_per_step
        self.t_start: float | None = None
        self.t_end = 0.0
        self.steps = 0

    def tick(self, step: int) -> None:
        if step == self.warmup:
            _sync(self.device)
            self.t_start = time.perf_counter()
        elif step > self.warmup:
            _sync(self.device)
            self.t_end, self.steps = time.perf_counter(), step - self.warmup

    @property
    def tokens_per_s(self) -> float:
        return self.steps * self.rows / max(self.t_end - (self.t_start or self.t_end), 1e-9)


# -- training methods ---------------------------------------------------------------------------------
def _autocast(device: torch.device, precision: str):
    from saekit.device import autocast

    return autocast(device, torch.bfloat16 if precision == "bf16" else None)


def train_saekit(data, device, d_sae, batch, steps, warmup, precision) -> float:
    from saekit.train import TensorSource, TrainConfig, Trainer

    clock = StepClock(device, warmup, batch)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.flat(
            arch="topk", k=K, d_sae=d_sae, batch_size=batch, total_tokens=steps * batch, lr=2e-4,
            lr_warmup_steps=0, lr_decay="none", dead_tokens=10_000_000, log_every=10**9,
            checkpoint_every=10**9, quiet=True, device=str(device), init_sample=min(4096, len(data)),
            autocast="bfloat16" if precision == "bf16" else "none", b_dec_init="mean",
        )  # fmt: skip
        Trainer(cfg, TensorSource(data), out=tmp).run(on_step=clock.tick)
    return clock.tokens_per_s


def _dense_step_fn(params, opt, device, precision):
    def step(x):
        with _autocast(device, precision):
            pre = ((x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]).relu()
        vals, idx = pre.float().topk(K, dim=-1, sorted=False)
        recon = torch.zeros_like(pre, dtype=torch.float32).scatter(-1, idx, vals) @ params["W_dec"]
        loss = (recon + params["b_dec"] - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            W = params["W_dec"]
            dirs = W / W.norm(dim=-1, keepdim=True)
            W.grad -= (W.grad * dirs).sum(-1, keepdim=True) * dirs
        opt.step()
        with torch.no_grad():
            W /= W.norm(dim=-1, keepdim=True)

    return step


def train_dense(data, device, d_sae, batch, steps, warmup, precision) -> float:
    """A plain dense TopK SAE: dense latents, autograd for every gradient, Adam, unit-norm decoder."""
    d_in = data.shape[1]
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    params = {
        "W_enc": torch.nn.Parameter(W_dec.T.contiguous().to(device)),
        "b_enc": torch.nn.Parameter(torch.zeros(d_sae, device=device)),
        "W_dec": torch.nn.Parameter(W_dec.to(device)),
        "b_dec": torch.nn.Parameter(data[:4096].mean(0).to(device)),
    }
    step_fn = _dense_step_fn(params, torch.optim.Adam(params.values(), lr=2e-4), device, precision)
    return _loop(step_fn, data, device, batch, steps, warmup)


def _loop(step_fn, data, device, batch, steps, warmup) -> float:
    clock = StepClock(device, warmup, batch)
    n_batches = len(data) // batch
    for s in range(steps):
        lo = (s % n_batches) * batch
        step_fn(data[lo : lo + batch].to(device, non_blocking=True))
        clock.tick(s + 1)
    return clock.tokens_per_s


def _sparsify_coder():
    """sparsify's SparseCoder without its package __init__ (which imports its trainer and `datasets`)."""
    spec = importlib.util.find_spec("sparsify")
    if spec is None:
        return None
    pkg = types.ModuleType("sparsify")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("sparsify", pkg)
    from sparsify.config import SparseCoderConfig
    from sparsify.sparse_coder import SparseCoder

    return SparseCoder, SparseCoderConfig


def train_sparsify(data, device, d_sae, batch, steps, warmup, precision) -> float:
    SparseCoder, SparseCoderConfig = _sparsify_coder()
    torch.manual_seed(0)
    sae = SparseCoder(
        data.shape[1], SparseCoderConfig(num_latents=d_sae, k=K), device=device, dtype=torch.float32
    )
    with torch.no_grad():
        sae.b_dec.copy_(data[:4096].mean(0).to(device))
    opt = torch.optim.Adam(sae.parameters(), lr=2e-4)
    dead = torch.zeros(d_sae, dtype=torch.bool, device=device)

    def step(x):
        with _autocast(device, precision):
            out = sae(x, dead_mask=dead)
        (out.fvu + out.auxk_loss).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()

    return _loop(step, data, device, batch, steps, warmup)


METHODS = {"saekit": train_saekit, "dense": train_dense, "sparsify": train_sparsify}


def bench_training(device, shapes, batch, steps, warmup) -> list[Row]:
    rows = []
    methods = [m for m in METHODS if m != "sparsify" or _sparsify_coder() is not None]
    for d_in, expansion in shapes:
        g = torch.Generator().manual_seed(d_in)
        n = batch * min(steps, 8)  # several epochs over a few batches: host memory stays small at d_in 4096
        data = torch.randn(n, d_in, generator=g) @ (torch.randn(d_in, d_in, generator=g) / d_in**0.5) + 0.5
        for precision in ("fp32", "bf16"):
            for method in methods:
                row = Row("train", f"d_in {d_in} x{expansion} k{K} B{batch}", method, precision)
                _reset_peak(device)
                try:
                    row.tokens_per_s = METHODS[method](
                        data, device, d_in * expansion, batch, steps, warmup, precision
                    )
                except Exception as exc:  # noqa: BLE001 - a failed method is a row, not a failed benchmark
                    row.note = f"{type(exc).__name__}: {str(exc)[:80]}"
                row.peak_mib = _peak_mib(device)
                rows.append(row)
        del data
    if "sparsify" not in methods:
        rows.append(Row("train", "-", "sparsify", "-", note="not importable (pip install eai-sparsify)"))
    return rows


# -- harvest -------------------------------------------------------------------------------------------
def _token_batches(tokenizer, n_tokens: int, batch: int, ctx: int) -> torch.Tensor:
    from saekit.data.corpus import load_corpus

    ids: list[int] = []
    for doc in load_corpus("shakespeare"):
        ids += tokenizer(doc.text)["input_ids"]
        if len(ids) >= n_tokens + ctx:
            break
    ids = torch.tensor(ids[: n_tokens + ctx], dtype=torch.long)
    n = (len(ids) // (batch * ctx)) * batch * ctx
    return ids[:n].view(-1, batch, ctx)


def bench_bare_forward(lm, device, n_tokens, batch, ctx) -> Row:
    """The model stopped after the hook layer (saekit's capture with stop_after_last), nothing kept."""
    from saekit.hooks import capture

    row = Row("harvest", f"SmolLM2 L{HOOK_LAYER} B{batch}x{ctx}", "bare truncated forward", lm.dtype)
    batches = _token_batches(lm.tokenizer, n_tokens, batch, ctx)
    _reset_peak(device)
    with torch.no_grad():
        for i, ids in enumerate(batches):
            if i == 1:
                _sync(device)
                t0, done = time.perf_counter(), 0
            with capture(lm.model, f"model.layers.{HOOK_LAYER}", stop_after_last=True) as cap:
                lm.model(ids.to(device))
            _ = cap.activations
            if i >= 1:
                done += ids.numel()
        _sync(device)
    row.tokens_per_s = done / max(time.perf_counter() - t0, 1e-9) if len(batches) > 1 else None
    row.peak_mib = _peak_mib(device)
    return row


def bench_harvest(lm, device, n_tokens, batch, ctx) -> Row:
    """saekit's own harvest with the model already loaded on the device (load time excluded)."""
    import dataclasses

    from saekit.data.harvest import HarvestConfig, harvest

    row = Row("harvest", f"SmolLM2 L{HOOK_LAYER} B{batch}x{ctx}", "saekit harvest", lm.dtype)
    names = {f.name for f in dataclasses.fields(HarvestConfig)}
    _reset_peak(device)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kw = dict(model="smollm2", hook_point=f"model.layers.{HOOK_LAYER}", corpus="shakespeare")
            kw.update(tokens=n_tokens, out=Path(tmp) / "acts", context_len=ctx, batch_size=batch)
            kw.update(quiet=True, overwrite=True)
            if "device" in names:
                kw["device"] = str(device)
            _sync(device)
            t0 = time.perf_counter()
            harvest(HarvestConfig(**{k: v for k, v in kw.items() if k in names}), loaded=lm)
            _sync(device)
            row.tokens_per_s = n_tokens / (time.perf_counter() - t0)
        if "device" not in names:
            row.note = "HarvestConfig has no device field yet"
    except Exception as exc:  # noqa: BLE001 - reported in the table
        row.note = f"{type(exc).__name__}: {str(exc)[:80]}"
    row.peak_mib = _peak_mib(device)
    return row


def bench_harvests(device, n_tokens, batch, ctx) -> list[Row]:
    from saekit.device import auto_model_dtype
    from saekit.models import load_model

    lm = load_model("smollm2", dtype=auto_model_dtype(device), quiet=True)
    lm.model.to(device).eval()
    rows = [
        bench_bare_forward(lm, device, n_tokens, batch, ctx),
        bench_harvest(lm, device, n_tokens, batch, ctx),
    ]
    del lm
    return rows


# -- table ----------------------------------------------------------------------------------------------
def add_ratios(rows: list[Row]) -> None:
    """x dense / x sparsify for training rows, x bare for the harvest row, within the same config."""
    by = {(r.section, r.config, r.method, r.precision): r.tokens_per_s for r in rows}
    for r in rows:
        if not r.tokens_per_s:
            continue
        refs = (
            {"x dense": "dense", "x sparsify": "sparsify"}
            if r.section == "train"
            else {"x bare": "bare truncated forward"}
        )
        for label, ref in refs.items():
            base = by.get((r.section, r.config, ref, r.precision))
            if base and ref != r.method:
                r.ratios[label] = r.tokens_per_s / base


def print_table(rows: list[Row], header: str) -> None:
    print(header)
    cols = ["section", "config", "method", "prec", "tok/s", "ratios", "peak GPU MiB", "note"]
    lines = [cols]
    for r in rows:
        tps = f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "-"
        ratios = "  ".join(f"{k} {v:.2f}" for k, v in r.ratios.items()) or "-"
        peak = f"{r.peak_mib:,.0f}" if r.peak_mib is not None else "-"
        lines.append([r.section, r.config, r.method, r.precision, tps, ratios, peak, r.note])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(cols))]
    for i, line in enumerate(lines):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --smoke, to check the code)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and few steps (seconds, any device)")
    ap.add_argument(
        "--steps", type=int, default=30, help="training steps per row (the first --warmup untimed)"
    )
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 for the fp32 rows")
    ap.add_argument("--skip-harvest", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"benchmarks/gpu.py: no CUDA GPU on this machine (torch {torch.__version__}); nothing measured")
        return 0
    from saekit.device import allow_tf32, resolve_device

    device = resolve_device(args.device)
    if args.smoke:  # seconds on a CPU: every code path, meaningless numbers
        shapes, batch, steps, warmup, n_tok, h_batch, ctx = [(16, 4), (32, 8)], 64, 4, 1, 512, 2, 32
    else:
        shapes = [(576, 16), (576, 32), (4096, 16), (4096, 32)]
        batch, steps, warmup, n_tok, h_batch, ctx = 4096, args.steps, args.warmup, 200_000, 32, 128
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = [] if args.skip_harvest else bench_harvests(device, n_tok, h_batch, ctx)
    with allow_tf32(args.tf32):
        rows += bench_training(device, shapes, batch, steps, warmup)
    add_ratios(rows)
    print_table(
        rows,
        f"saekit GPU benchmark on {name} (torch {torch.__version__}, tf32={args.tf32}, smoke={args.smoke})",
    )
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
