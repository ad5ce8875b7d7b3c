"""How far can the offline steering judges be trusted? Agreement with labels of real steered continuations.

Two steps, so the labeller never sees a judge's score:

    python benchmarks/judge_agreement.py sample --out /tmp/blind.json      # texts only, no scores
    (label each item: on_concept, fluent -> "sweep_items" in saekit/steer/concept/data/judge_labels.json)
    python benchmarks/judge_agreement.py score                              # agreement per judge

`sample` draws continuations that `saekit sweep` generated and scored (`docs/results/sweep_protocol/` and
`docs/results/sweep_layers/`: SmolLM2-135M steered with SAE arms, DiffMean and prompting, or unsteered),
the same number per concept, spread over arms and strengths, without their scores. `score` joins the
labels back to the scores the sweep recorded and to the judges recomputed here, and reports accuracy and
Cohen's kappa with 95% bootstrap intervals for:

- concept: the sweep's MiniLM judge (`concept_score`: the continuation's cosine to the concept description,
  rescaled so the unsteered continuation is 0 and the concept's texts are 1), "present" at >= 0.5;
- concept, alternatives: the raw MiniLM cosine to the description at a threshold, and a per-concept
  logistic classifier on MiniLM embeddings of the concept's own reference texts against the other
  concepts' (it never sees a steered text, so it cannot have been fit on what a method was trained on);
- fluency: the sweep's fluency score (perplexity ratio to the unsteered continuation times the distinct
  bigram ratio), "fluent" at >= 0.5.

Thresholds of the alternatives are chosen on half of the labelled items (split by concept) and the
agreement is reported on the other half, so a tuned threshold is not scored on its own tuning data.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "docs/results/sweep_protocol/sweep.json", ROOT / "docs/results/sweep_layers/sweep.json"]
LABELS = ROOT / "saekit/steer/concept/data/judge_labels.json"


def _prompts(doc: dict) -> list[str]:
    from saekit.steer.concept.concepts import load_prompts

    cfg = doc["config"]
    if "n_train" not in cfg:  # a merged sweep: the protocol's prompts at its sizes
        cfg = {"prompts": "protocol", "n_train": 3, "n_test": 3}
    train, test = load_prompts(cfg.get("prompts", "protocol"), cfg["n_train"], cfg["n_test"])
    return train + test


def _records() -> list[dict]:
    out = []
    for src in SOURCES:
        doc = json.loads(src.read_text())
        prompts = _prompts(doc)
        desc = {c["concept"]: c["description"] for c in doc["concepts"]}
        for i, r in enumerate(doc["records"]):
            if "concept_score" not in r or r["arm"] == "unsteered" and r["concept"] is None:
                continue
            nll = r.get("nll")
            out.append({"id": f"{src.parent.name}:{i}", "concept": r["concept"],
                        "description": desc[r["concept"]], "prompt": prompts[r["prompt_idx"]],
                        "text": r["text"], "arm": r["arm"], "strength": r["strength"],
                        "concept_score": r["concept_score"], "fluency": r["fluency"],
                        "concept_cos": r["concept_cos"], "distinct2": r.get("distinct2"),
                        "neg_nll": -nll if nll is not None else None})  # fmt: skip
    return out


def sample(args) -> None:
    rng = random.Random(args.seed)
    by_concept: dict[str, list[dict]] = defaultdict(list)
    seen = set()
    for r in _records():
        key = (r["concept"], r["text"].strip())
        if key not in seen:  # the same greedy text under two arms is one item
            seen.add(key)
            by_concept[r["concept"]].append(r)
    items = []
    for concept in sorted(by_concept):
        pool = by_concept[concept]
        rng.shuffle(pool)
        arms: dict[str, list[dict]] = defaultdict(list)
        for r in pool:
            arms[r["arm"]].append(r)
        picked: list[dict] = []
        while len(picked) < args.per_concept and any(arms.values()):  # round robin over arms
            for arm in sorted(arms):
                if arms[arm] and len(picked) < args.per_concept:
                    picked.append(arms[arm].pop())
        items += picked
    rng.shuffle(items)
    blind = [{k: r[k] for k in ("id", "concept", "description", "prompt", "text")} for r in items]
    Path(args.out).write_text(json.dumps(blind, indent=1) + "\n")
    print(f"wrote {len(blind)} items over {len(by_concept)} concepts to {args.out} (no scores in it)")


def kappa(a: list[bool], b: list[bool]) -> float:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def _interval(labels: list[bool], pred: list[bool], rng: random.Random, reps: int = 2000):
    n = len(labels)
    accs, kaps = [], []
    for _ in range(reps):
        idx = [rng.randrange(n) for _ in range(n)]
        la, pr = [labels[i] for i in idx], [pred[i] for i in idx]
        accs.append(sum(x == y for x, y in zip(la, pr, strict=True)) / n)
        kaps.append(kappa(la, pr))
    accs.sort()
    kaps.sort()
    lo, hi = int(0.025 * reps), int(0.975 * reps) - 1
    acc = sum(x == y for x, y in zip(labels, pred, strict=True)) / n
    return acc, (accs[lo], accs[hi]), kappa(labels, pred), (kaps[lo], kaps[hi])


def _classifier_scores(items: list[dict]) -> list[float]:
    """P(concept) from a per-concept logistic classifier on MiniLM embeddings of the concepts' own
    reference texts (this concept's against every other concept's): no steered text is used to fit it."""
    from saekit.steer.concept.concepts import load_concepts
    from saekit.steer.concept.judges import MiniLMJudge

    judge = MiniLMJudge()
    concepts = {c.name: c for c in load_concepts("protocol")}
    names = sorted(concepts)
    ref_texts = {n: [concepts[n].description, *concepts[n].texts] for n in names}
    embs = {n: judge.embed(ref_texts[n]) for n in names}
    item_emb = judge.embed([it["text"] for it in items])
    out = []
    weights = {}
    for n in names:
        x = torch.cat([embs[m] for m in names])
        y = torch.cat([torch.full((len(embs[m]),), float(m == n)) for m in names])
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200)
        pos = y.mean()

        def closure(x=x, y=y, w=w, b=b, pos=pos, opt=opt):
            opt.zero_grad()
            logits = x @ w + b
            weight = torch.where(y > 0, 0.5 / pos, 0.5 / (1 - pos))  # balance this concept vs the rest
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            loss = (weight * bce).mean()
            loss = loss + 1e-2 * w.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        weights[n] = (w.detach(), b.detach())
    for it, e in zip(items, item_emb, strict=True):
        w, b = weights[it["concept"]]
        out.append(float(torch.sigmoid(e @ w + b)))
    return out


def _best_threshold(scores: list[float], labels: list[bool]) -> float:
    cands = sorted(set(scores))
    best = max(cands, key=lambda t: (kappa(labels, [s >= t for s in scores]), -abs(t - 0.5)))
    return best


def score(args) -> None:
    doc = json.loads(LABELS.read_text())
    recs = {r["id"]: r for r in _records()}
    items = [it for it in doc.get("sweep_items", []) if it.get("id") in recs]
    if len(items) < 10:
        raise SystemExit(f"only {len(items)} labelled sweep continuations in {LABELS}; run `sample`, label")
    for it in items:
        keys = ("concept_score", "fluency", "concept_cos", "distinct2", "neg_nll", "arm", "strength")
        it.update({k: recs[it["id"]][k] for k in keys})
    concepts = sorted({it["concept"] for it in items})
    rng = random.Random(0)
    tune_concepts = set(rng.sample(concepts, len(concepts) // 2))
    clf = _classifier_scores(items)
    for it, p in zip(items, clf, strict=True):
        it["classifier"] = p
    lab_c = [bool(it["on_concept"]) for it in items]
    lab_f = [bool(it["fluent"]) for it in items]
    tune = [i for i, it in enumerate(items) if it["concept"] in tune_concepts]
    held = [i for i, it in enumerate(items) if it["concept"] not in tune_concepts]
    rows = []

    def add(name, key, labels, fixed=None):
        scores = [it[key] for it in items]
        if fixed is None:
            thr = _best_threshold([scores[i] for i in tune], [labels[i] for i in tune])
        else:
            thr = fixed
        for part, idx in (("all", range(len(items))), ("held-out half", held)):
            if fixed is None and part == "all":
                continue
            la = [labels[i] for i in idx]
            pr = [scores[i] >= thr for i in idx]
            acc, aci, kap, kci = _interval(la, pr, random.Random(1))
            shown = f"{thr:.3g}" + ("" if fixed is not None else " (tuned)")
            rows.append((name, shown, part, len(la), acc, aci, kap, kci))

    add("concept: sweep MiniLM concept_score", "concept_score", lab_c, fixed=0.5)
    add("concept: sweep MiniLM concept_score", "concept_score", lab_c)
    add("concept: raw MiniLM cosine to description", "concept_cos", lab_c)
    add("concept: per-concept classifier on MiniLM", "classifier", lab_c, fixed=0.5)
    add("concept: per-concept classifier on MiniLM", "classifier", lab_c)
    add("fluency: sweep fluency score", "fluency", lab_f, fixed=0.5)
    add("fluency: sweep fluency score", "fluency", lab_f)
    add("fluency: distinct bigrams alone", "distinct2", lab_f)
    add("fluency: model log-likelihood alone", "neg_nll", lab_f)
    n_on, n_fl = sum(lab_c), sum(lab_f)
    print(f"{len(items)} labelled continuations over {len(concepts)} concepts: {n_on} on concept, "
          f"{n_fl} fluent; thresholds tuned on the concepts {', '.join(sorted(tune_concepts))}\n")
    print("| judge | threshold | items | n | accuracy [95%] | Cohen's kappa [95%] |")
    print("|---|---|---|---|---|---|")
    for name, thr, part, n, acc, aci, kap, kci in rows:
        print(f"| {name} | {thr} | {part} | {n} | {acc:.2f} [{aci[0]:.2f}, {aci[1]:.2f}] | "
              f"{kap:.2f} [{kci[0]:.2f}, {kci[1]:.2f}] |")
    # paired: the classifier against the sweep's judge, both at 0.5, on the same items
    a = [(it["classifier"] >= 0.5) == lab for it, lab in zip(items, lab_c, strict=True)]
    b = [(it["concept_score"] >= 0.5) == lab for it, lab in zip(items, lab_c, strict=True)]
    r2 = random.Random(2)
    diffs = sorted(
        sum(a[i] - b[i] for i in idx) / len(idx)
        for idx in ([r2.randrange(len(a)) for _ in a] for _ in range(2000))
    )
    print(f"\nclassifier minus sweep judge, concept accuracy (paired, all {len(a)}): "
          f"{(sum(a) - sum(b)) / len(a):+.3f} [{diffs[50]:+.3f}, {diffs[1949]:+.3f}]")
    if args.dump:
        Path(args.dump).write_text(json.dumps(items, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--out", default="/tmp/judge_blind.json")
    s.add_argument("--per-concept", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("score")
    c.add_argument("--dump", default=None, help="write the joined items (labels, scores) here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    sample(a) if a.cmd == "sample" else score(a)


if __name__ == "__main__":
    main()
