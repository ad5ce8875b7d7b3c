"""The supervised-steering table from a sweep.json: test overall [95% CI] per arm (strength chosen per
concept on train), the paired differences (best SAE arm - DiffMean, sparse - free, each new arm -
DiffMean) and, per concept, the sparse fit's k, features and losses.

    python docs/results/supervised_steering/make_table.py SWEEP.json > table_supervised.md
"""

from __future__ import annotations

import json
import sys

from saekit.sweep.protocol import arm_difference, protocol_table


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.3f}, {hi:.3f}]"


def main(path: str) -> str:
    doc = json.loads(open(path).read())
    recs = doc["records"]
    prot = protocol_table(recs)
    rows = sorted(prot["best_layer"], key=lambda r: -(r["overall"] or 0))
    out = ["| arm | test overall | 95% CI | concept | fluency | relevance | n |", "|---" * 7 + "|"]
    for r in rows:
        out.append(f"| {r['arm']} | {r['overall']:.3f} | {_ci(*r['ci'])} | {r['concept_score']:.3f} | "
                   f"{r['fluency']:.3f} | {r['relevance']:.3f} | {r['n']} |")  # fmt: skip
    b = prot["best_sae_vs_diffmean"]
    out += ["", "| paired difference on test (concept x prompt) | mean | 95% CI | n |", "|---|---|---|---|"]
    if b:
        out.append(f"| best SAE arm chosen on train ({b['arm']}) - diffmean | {b['difference']:+.3f} | "
                   f"{_ci(*b['difference_ci'])} | {b['n_pairs']} |")  # fmt: skip
    pc = prot.get("sae_per_concept")
    if pc and pc["difference"] is not None:
        out.append(f"| SAE arm chosen per concept on train - diffmean | {pc['difference']:+.3f} | "
                   f"{_ci(*pc['difference_ci'])} | {pc['n_pairs']} |")  # fmt: skip
    arms = {r["arm"] for r in recs}
    pairs = [("sparse:additive", "free"), ("sparse:additive", "diffmean"), ("free", "diffmean"),
             ("confidence:additive", "diffmean"), ("confidence:additive", "input:additive"),
             ("sparse:additive", "decompose:additive"), ("prompting", "diffmean")]  # fmt: skip
    for a, c in pairs:
        if a in arms and c in arms:
            d = arm_difference(recs, a, c)
            if d:
                ci = _ci(*d["difference_ci"])
                out.append(f"| {a} - {c} | {d['difference']:+.3f} | {ci} | {d['n_pairs']} |")
    head = ("| concept | sparse k | sparse features (weight, unit vector) | val loss: base -> sparse / free "
            "| fitted norm sparse / free (x mean norm) | confidence feature |")
    out += ["", head, "|---" * 6 + "|"]
    for c in doc["concepts"]:
        f = c.get("fits") or {}
        sp, fr = f.get("sparse"), f.get("free")
        arm = c["arms"].get("sparse:additive", {})
        fw = zip(arm.get("features", []), arm.get("weights", []))
        feats = ", ".join(f"f{j} {w:.2f}" for j, w in fw)
        conf = c["arms"].get("confidence:additive", {}).get("features", [])
        if sp and fr:
            val = f"{sp['base_loss'][1]:.2f} -> {sp['losses'][str(sp['k'])][1]:.2f} / {fr['loss'][1]:.2f}"
            norms = f"{sp['norm']:.2f} / {fr['norm']:.2f}"
            out.append(f"| {c['concept']} | {sp['k']} | {feats} | {val} | {norms} | {conf} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(main(sys.argv[1]))
