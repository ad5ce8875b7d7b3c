"""Image features on the testbed's digits model: does `analyze real` show a class feature's class?

    python benchmarks/analysis_testbed.py --work /tmp/tbex --out docs/results/analysis_testbed

Trains (or loads, cached in WORK) the testbed generator, harvests a store with image metadata at one
block (all tokens, all steps, per-image seeds), fits a TopK SAE, picks the most class-selective
feature of each digit class (testbed/features.py), runs `analyze real` on them and prints, per
feature, the classes of its top images (purity = fraction of the tracked class).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    from saekit.analysis.run import RealArgs, run_real
    from saekit.analysis.testbed_store import harvest_testbed_store
    from saekit.data.store import ActivationStore
    from saekit.testbed.config import TestbedConfig
    from saekit.testbed.features import class_features
    from saekit.testbed.sae_fit import fit_topk_sae
    from saekit.testbed.training import cache_key, train_or_load

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/tbex")
    ap.add_argument("--out", default="docs/results/analysis_testbed")
    ap.add_argument("--depth", default="middle")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--sae-steps", type=int, default=800)
    a = ap.parse_args()
    t0 = time.time()
    cfg = TestbedConfig(quiet=True)
    work = Path(a.work)
    tm = train_or_load(cfg, work)
    model_path = work / "models" / f"testbed_{cache_key(cfg)}.safetensors"
    block = cfg.block_name(a.depth)
    store = harvest_testbed_store(
        tm.model, cfg, model_path, block, "image", work / "store", n_images=a.images, seed=1000
    )
    st = ActivationStore.open(store)
    acts = torch.cat(list(st.iter_batches(65536, shuffle=False)))
    docs = json.loads((store / "documents.json").read_text())
    doc_id = torch.cat([m["doc_id"] for _, m in st.iter_rows_with_meta(65536)]).long()
    label = torch.tensor([d["class"] for d in docs])[doc_id]
    sae, fvu = fit_topk_sae(acts, d_sae=cfg.sae_expansion * cfg.d_model, k=cfg.sae_k, steps=a.sae_steps,
                            batch=cfg.sae_batch, seed=cfg.seed, hook_point=block, stream="image",
                            out=work / "sae")  # fmt: skip
    cf = class_features(sae, acts, label)
    feats = cf.feature.tolist()
    args = RealArgs(
        sae=str(work / "sae"), store=str(store), out=a.out, features=",".join(map(str, feats)), quiet=True
    )
    doc = run_real(args)
    print(f"testbed {block}@image: {len(acts)} rows, SAE FVU {fvu:.3f}, {time.time() - t0:.0f}s")
    print("| class | feature | selectivity | classes of its top images | purity |")
    print("|---|---|---|---|---|")
    purities = []
    for c, f in enumerate(feats):
        classes = [t["class"] for t in doc["features"][str(f)].get("top_images", [])]
        p = sum(x == c for x in classes) / max(1, len(classes))
        purities.append(p)
        print(f"| {c} | {f} | {float(cf.selectivity[c]):.2f} | {' '.join(map(str, classes))} | {p:.2f} |")
    print(f"mean purity {sum(purities) / len(purities):.2f} (chance 0.10)")


if __name__ == "__main__":
    main()
