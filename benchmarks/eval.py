"""Spliced evaluation speed on SmolLM2: shared prefix vs full passes, same contexts, same numbers.

Rows, measured in one run on the same held-out Shakespeare contexts (median of --repeats):
  (a) before: three full forward passes per batch (original, SAE-spliced, zero-ablated), batch 8 —
      what `saekit eval` did before the shared prefix;
  (b) full: the four variants (adds mean ablation) as full forward passes (`--no-share-prefix`);
  (c) shared: prefix to the hook once, the four variants batched through the layers after it only;
  (d) reused: (c) given the SAE-independent baseline of an earlier eval at this hook on these tokens (what
      `saekit eval` reads from its cache for a second SAE): no prefix, only original + spliced run.
The SAE is a random TopK SAE (speed does not depend on its quality). The table also prints the largest
difference between (b) and (c), and (b) and (d), in every reported number, which must be ~0.

    python benchmarks/eval.py [--layer 15] [--tokens 1024] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F


def _before(model, hp, recon, ids, mask, pos, batch_size=8) -> float:
    """The pre-change algorithm: three full passes per batch; returns ce_sae (to check it agrees)."""
    from saekit.hooks import intervene

    total, n = 0.0, 0
    for lo in range(0, ids.shape[0], batch_size):
        b_ids, b_mask, b_pos = (
            ids[lo : lo + batch_size],
            mask[lo : lo + batch_size],
            pos[lo : lo + batch_size],
        )

        def splice(x, fn, p=b_pos):
            x = x.clone()
            x[p] = fn(x[p])
            return x

        outs = []
        for fn in (None, recon, torch.zeros_like):
            edit = (lambda x: x) if fn is None else (lambda x, f=fn: splice(x, f))
            with torch.no_grad(), intervene(model, hp, edit):
                outs.append(model(input_ids=b_ids, attention_mask=b_mask.long()).logits.float())
        sel = b_pos[:, :-1]
        lp = F.log_softmax(outs[1][:, :-1][sel], -1)
        total += float(-lp.gather(-1, b_ids[:, 1:][sel][:, None]).sum())
        n += int(sel.sum())
    return total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--context-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from saekit.data.corpus import load_corpus
    from saekit.eval.evaluate import heldout_tokens
    from saekit.eval.spliced import eval_positions, spliced_metrics, spliced_metrics_and_baseline
    from saekit.hooks import HookPoint
    from saekit.models import load_model
    from saekit.sae import SAEConfig, build

    lm = load_model("smollm2", dtype="float32", quiet=True)
    batch = heldout_tokens(load_corpus("shakespeare"), lm.tokenizer, args.context_len, args.tokens)
    pos = eval_positions(batch.token_id, batch.mask, set(lm.tokenizer.all_special_ids))
    n_ctx = int(torch.searchsorted(pos.sum(1).cumsum(0), torch.tensor(args.tokens))) + 1
    ids, mask, pos = batch.token_id[:n_ctx], batch.mask[:n_ctx], pos[:n_ctx]
    sae = build(SAEConfig(d_in=lm.d_model, d_sae=16 * lm.d_model, arch="topk", k=32), seed=0).eval()

    def recon(x):
        return sae.reconstruct(x.float()).to(x.dtype)

    hp = HookPoint.parse(f"model.layers.{args.layer}")
    n_tok = int(pos[:, :-1].sum())
    common = (lm.model, hp, recon, ids, mask, pos)
    runs = {
        "(a) before: 3 full passes": lambda: _before(lm.model, hp, recon, ids, mask, pos),
        "(b) full: 4 variants": lambda: spliced_metrics(
            lm.model, hp, recon, ids, mask, pos, share_prefix=False
        ),
        "(c) shared prefix: 4 variants": lambda: spliced_metrics(*common),
    }
    _, baseline = spliced_metrics_and_baseline(*common)  # also the warm-up (allocations, thread pools)
    runs["(d) reused baseline: 2 variants"] = lambda: spliced_metrics_and_baseline(
        *common, baseline=baseline
    )[0]
    times: dict[str, list[float]] = {k: [] for k in runs}
    results = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():  # interleaved, so load drifts hit every row alike
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    full, shared = results["(b) full: 4 variants"], results["(c) shared prefix: 4 variants"]
    reused = results["(d) reused baseline: 2 variants"]
    fields = ("ce_orig", "ce_sae", "ce_zero", "ce_mean", "kl", "ce_recovered", "ce_recovered_mean")
    assert shared.shared_prefix and not full.shared_prefix and reused.baseline_reused
    max_diff = max(abs(getattr(full, f) - getattr(shared, f)) for f in fields)
    max_diff_d = max(abs(getattr(full, f) - getattr(reused, f)) for f in fields)
    base_b = statistics.median(times["(b) full: 4 variants"])
    base = statistics.median(times["(a) before: 3 full passes"])
    print(
        f"\nSmolLM2 float32, hook {hp}, {n_tok} scored tokens, {n_ctx} contexts x {args.context_len}, "
        f"{args.threads} threads, median of {args.repeats}; load average {os.getloadavg()}"
    )
    print("| mode | s | tok/s | speed-up vs (a) | vs (b), same numbers |\n|---|---|---|---|---|")
    for name in runs:
        med = statistics.median(times[name])
        vs_b = "-" if name.startswith("(a)") else f"{base_b / med:.2f}x"
        print(f"| {name} | {med:.2f} | {n_tok / med:.1f} | {base / med:.2f}x | {vs_b} |")
    print(
        f"max |(b) - (c)| over {', '.join(fields)}: {max_diff:.2e}; max |(b) - (d)|: {max_diff_d:.2e}   "
        f"ce_sae before {results['(a) before: 3 full passes']:.5f} vs now {shared.ce_sae:.5f}"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
