"""Training throughput of TopK SAEs: saekit (fp32, bf16) vs a plain dense PyTorch TopK and sparsify.

d_in=576, d_sae=9216, k=32, batch 4096, fp32, Adam at the same constant LR, no aux-k (dead threshold
10M tokens for everyone, sparsify's default), constant LR 2e-3 for all, on the same synthetic data: sparse non-negative codes over a
hidden unit dictionary plus a mean offset and noise, so FVU after the same tokens is meaningful.

Each (method, repeat) runs in its own subprocess so peak RSS is per method; repeats are interleaved
across methods so load from other users hits all of them alike; tokens/s is timed after `--warmup`
steps; medians are reported with ratios to the dense reference and to sparsify measured in this run.

    python benchmarks/train_throughput.py [--steps 10] [--repeats 3] [--sparsify-python /tmp/sparsify-venv/bin/python]

sparsify is measured when importable by the given interpreter (`pip install --no-deps eai-sparsify
einops natsort simple-parsing docstring-parser` into a venv made with `--system-site-packages`); its
package `__init__` (which pulls in `datasets`) is bypassed and only `sparse_coder` is used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

D_IN, D_SAE, K, BATCH = 576, 9216, 32, 4096
LR = 2e-3  # same constant LR for every method; larger than the 2.7e-4 rule so a short run moves


def make_data(n_rows: int, seed: int = 0):
    """Synthetic activations: 24 active (of 4096) ground-truth directions per row, offset, noise."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(4096, D_IN, generator=g)
    dictionary /= dictionary.norm(dim=-1, keepdim=True)
    offset = torch.randn(D_IN, generator=g) * 2
    rows = []
    for lo in range(0, n_rows, BATCH):
        b = min(BATCH, n_rows - lo)
        idx = torch.randint(0, 4096, (b, 24), generator=g)
        vals = torch.rand(b, 24, generator=g).pow(2) * 10
        x = torch.nn.functional.embedding_bag(idx, dictionary, per_sample_weights=vals, mode="sum")
        rows.append(x + offset + 0.3 * torch.randn(b, D_IN, generator=g))
    return torch.cat(rows)


def fvu(x, recon) -> float:
    return float((x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def run_saekit(data, heldout, steps, warmup, autocast):
    import tempfile

    from saekit.train import TensorSource, TrainConfig, Trainer
    from saekit.train.metrics import read_log

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            arch="topk",
            k=K,
            d_sae=D_SAE,
            batch_size=BATCH,
            total_tokens=steps * BATCH,
            lr=LR,
            lr_warmup_steps=0,
            lr_decay="none",
            dead_tokens=10_000_000,
            log_every=warmup,
            checkpoint_every=10**9,
            quiet=True,
            autocast=autocast,
            init_sample=4096,
        )
        res = Trainer(cfg, TensorSource(data), out=tmp).run()
        log = read_log(f"{tmp}/train_log.jsonl")
    t_w = next(r["elapsed_s"] for r in log if r["step"] == warmup)
    t_end = log[-1]["elapsed_s"]
    res.sae.eval()
    import torch

    with torch.no_grad():
        recon = res.sae(heldout).recon
    return (steps - warmup) * BATCH / (t_end - t_w), fvu(heldout, recon)


def run_dense(data, heldout, steps, warmup):
    """Plain PyTorch TopK SAE: dense latents, autograd everywhere, Adam, unit-norm decoder."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    W_dec = torch.randn(D_SAE, D_IN)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    params = {
        "W_enc": nn.Parameter(W_dec.T.clone()),
        "b_enc": nn.Parameter(torch.zeros(D_SAE)),
        "W_dec": nn.Parameter(W_dec),
        "b_dec": nn.Parameter(data[:4096].mean(0)),
    }
    opt = torch.optim.Adam(params.values(), lr=LR)

    def forward(x):
        pre = ((x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]).relu()
        vals, idx = pre.topk(K, dim=-1, sorted=False)
        lat = torch.zeros_like(pre).scatter(-1, idx, vals)
        return lat @ params["W_dec"] + params["b_dec"]

    t_w = None
    t0 = time.perf_counter()
    for step, x in enumerate(data.split(BATCH)[:steps]):
        if step == warmup:
            t_w = time.perf_counter()
        loss = (forward(x) - x).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            W = params["W_dec"]
            dirs = W / W.norm(dim=-1, keepdim=True)
            W.grad -= (W.grad * dirs).sum(-1, keepdim=True) * dirs
        opt.step()
        with torch.no_grad():
            W /= W.norm(dim=-1, keepdim=True)
    elapsed = time.perf_counter() - (t_w or t0)
    with torch.no_grad():
        return (steps - warmup) * BATCH / elapsed, fvu(heldout, forward(heldout))


def run_sparsify(data, heldout, steps, warmup):
    """sparsify 1.3.3's SparseCoder with its trainer's step (Adam, gradient projection, renorm)."""
    import importlib.util
    import types

    import torch

    spec = importlib.util.find_spec("sparsify")
    pkg = types.ModuleType("sparsify")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["sparsify"] = pkg  # skip sparsify/__init__ (it imports the trainer -> datasets)
    from sparsify.config import SparseCoderConfig
    from sparsify.sparse_coder import SparseCoder

    torch.manual_seed(0)
    sae = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K), device="cpu", dtype=torch.float32)
    with torch.no_grad():
        sae.b_dec.copy_(data[:4096].mean(0))  # what sparsify's trainer does before training
    opt = torch.optim.Adam(sae.parameters(), lr=LR)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    t_w = None
    t0 = time.perf_counter()
    for step, x in enumerate(data.split(BATCH)[:steps]):
        if step == warmup:
            t_w = time.perf_counter()
        out = sae(x, dead_mask=dead)
        loss = out.fvu + out.auxk_loss
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
    elapsed = time.perf_counter() - (t_w or t0)
    with torch.no_grad():
        return (steps - warmup) * BATCH / elapsed, fvu(heldout, sae(heldout).sae_out)


def cpu_has_native_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def child(method: str, steps: int, warmup: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    data = make_data(steps * BATCH, seed=0)
    heldout = make_data(4096, seed=1)
    if method == "saekit-fp32":
        tps, f = run_saekit(data, heldout, steps, warmup, "none")
    elif method == "saekit-bf16":
        tps, f = run_saekit(data, heldout, steps, warmup, "bfloat16")
    elif method == "dense-ref":
        tps, f = run_dense(data, heldout, steps, warmup)
    elif method == "sparsify":
        tps, f = run_sparsify(data, heldout, steps, warmup)
    else:
        raise SystemExit(f"unknown method {method}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"method": method, "tokens_per_s": tps, "fvu": f, "peak_rss_mb": rss_mb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparsify-python", default="/tmp/sparsify-venv/bin/python")
    ap.add_argument(
        "--bf16",
        choices=["auto", "yes", "no"],
        default="auto",
        help="measure saekit bf16 (auto: only on CPUs with AVX512-BF16/AMX; elsewhere it is emulated)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.steps, args.warmup, args.threads)
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    methods = {"dense-ref": sys.executable, "saekit-fp32": sys.executable}
    notes = []
    if args.bf16 == "yes" or (args.bf16 == "auto" and cpu_has_native_bf16()):
        methods["saekit-bf16"] = sys.executable
    else:
        notes.append(
            "saekit-bf16 skipped: this CPU has no AVX512-BF16/AMX, so torch emulates bf16 matmuls "
            "(measured ~100x slower than fp32 here); use --bf16 yes to force"
        )
    sp = args.sparsify_python
    ok = (
        os.path.exists(sp)
        and subprocess.run(
            [sp, "-c", "import importlib.util,sys; sys.exit(importlib.util.find_spec('sparsify') is None)"],
            capture_output=True,
        ).returncode
        == 0
    )
    if ok:
        methods["sparsify"] = sp
    else:
        notes.append(f"sparsify not measured: not importable by {sp}")
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for rep in range(args.repeats):
        for method, py in methods.items():
            cmd = [
                py,
                os.path.abspath(__file__),
                "--child",
                method,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--threads",
                str(args.threads),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{method} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            results[method].append(rec)
            print(
                f"  repeat {rep}: {method:12s} {rec['tokens_per_s']:9.0f} tok/s  FVU {rec['fvu']:.4f}",
                flush=True,
            )
    med = {
        m: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "fvu", "peak_rss_mb")}
        for m, rs in results.items()
        if rs
    }
    dense = med.get("dense-ref", {}).get("tokens_per_s")
    spars = med.get("sparsify", {}).get("tokens_per_s")
    print(
        f"\nTopK SAE training, d_in={D_IN} d_sae={D_SAE} k={K} batch={BATCH} fp32, {args.threads} threads, "
        f"{args.steps} steps ({args.steps * BATCH} tokens), timed after {args.warmup}; median of {args.repeats}"
    )
    print(
        f"{'method':14s} {'tokens/s':>10s} {'x dense':>8s} {'x sparsify':>10s} {'FVU@tokens':>11s} {'peak RSS MB':>12s}"
    )
    for m, r in med.items():
        xd = f"{r['tokens_per_s'] / dense:.2f}" if dense else "-"
        xs = f"{r['tokens_per_s'] / spars:.2f}" if spars else "-"
        print(
            f"{m:14s} {r['tokens_per_s']:10.0f} {xd:>8s} {xs:>10s} {r['fvu']:11.4f} {r['peak_rss_mb']:12.0f}"
        )
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
