"""Can `saekit steer --concept WORDS` trust its own verdict? The words judge against hand labels and
against the independent judge of docs/results/steer_carry.

    OMP_NUM_THREADS=1 python benchmarks/concept_judge.py texts --sae SAE --out judge_texts.json
    python benchmarks/concept_judge.py score --texts judge_texts.json \
        --runs docs/results/steer_carry/dev_protocol.json docs/results/steer_carry/heldout_test.json

`texts` asks the model `word_judge.JUDGE_PROMPT` about every bundled and held-out concept *name* (what
the command gets), with the judge's own seed: the texts the words judge trains on, never used to choose
a feature. `score` then reports:

1. against the hand labels of `judge_labels.json` (protocol concepts; the judge sees only the name, its
   texts and the other concepts' sentences): accuracy and Cohen's kappa, beside the sweep's judge,
   which reads the hand-written description;
2. per try of the steer_carry runs (every rung of a wide ladder, texts and both judges' scores
   recorded): how often each in-command verdict agrees with the independent judge (anchored on the
   concept's hand-written sentences, never seen by the command): accuracy, kappa, precision of "carried";
3. the ladder replayed with each in-command judge as its stopping rule: concepts carried (verified by
   the independent judge), and how many of its "an SAE arm carried it" verdicts the independent judge
   confirms.
Everything is chosen on the dev run (protocol concepts) and reported on the held-out one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
LABELS = ROOT / "saekit/steer/concept/data/judge_labels.json"
CHOSEN = "recipe:1,2 decompose4:1,2 decompose16:1,2 templates/recipe:1,2 templates/decompose4:1,2 " \
         "templates/decompose16:1,2 diffmean:1"  # fmt: skip


def texts(args) -> None:
    from saekit.steer.concept.concepts import load_concepts
    from saekit.steer.concept.steering import JUDGE_PROMPT, JUDGE_SEED, model_texts
    from saekit.steer.generate import GenerationConfig
    from saekit.steer.session import open_session

    torch.set_num_threads(args.threads)
    s = open_session(args.sae)
    chat = GenerationConfig().chat
    names = [c.name for c in load_concepts("protocol")] + [c.name for c in load_concepts(
        str(ROOT / "saekit/steer/concept/data/heldout_concepts.json"))]  # fmt: skip
    out = {n: list(model_texts(s.lm, n, chat=chat, seed=JUDGE_SEED, prompt=JUDGE_PROMPT)) for n in names}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote judge texts for {len(out)} concepts to {args.out}")


def agreement(truth: list[bool], pred: list[bool], reps: int = 2000, seed: int = 0) -> dict:
    """Accuracy, kappa, precision and recall of `pred` against `truth`, with 95% bootstrap intervals."""
    from judge_agreement import kappa

    rng = random.Random(seed)

    def stats(t, p):
        tp = sum(a and b for a, b in zip(t, p, strict=True))
        return {"accuracy": sum(a == b for a, b in zip(t, p, strict=True)) / len(t), "kappa": kappa(t, p),
                "precision": tp / max(1, sum(p)), "recall": tp / max(1, sum(t))}  # fmt: skip

    point = stats(truth, pred)
    boots = {k: [] for k in point}
    for _ in range(reps):
        idx = [rng.randrange(len(truth)) for _ in truth]
        for k, v in stats([truth[i] for i in idx], [pred[i] for i in idx]).items():
            boots[k].append(v)
    lo, hi = int(0.025 * reps), int(0.975 * reps) - 1
    return {k: (v, sorted(boots[k])[lo], sorted(boots[k])[hi]) for k, v in point.items()} | {
        "n": len(truth), "claimed": sum(pred), "true": sum(truth)}  # fmt: skip


def _fmt(a: dict, k: str) -> str:
    v, lo, hi = a[k]
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def _negatives(name: str) -> list[str]:
    """The bundled concepts' descriptions and sentences, less a bundled concept of this name."""
    from saekit.steer.concept.concepts import load_concepts

    return [t for c in load_concepts("protocol") if c.name != name for t in (c.description, *c.texts)]


def fit_logistic(pos, neg, l2: float = 1e-2):
    """(w, b): class-balanced L2 logistic regression, `pos` rows (1) against `neg` rows (0)."""
    x = torch.cat([pos, neg]).double()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    weight = torch.where(y > 0, 0.5 / len(pos), 0.5 / len(neg))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none")
        loss = (weight * bce).sum() + l2 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float(), b.detach().float()


class NameJudges:
    """The in-command judges that read only a concept's name, the judge's own texts about it and (the
    classifier) the bundled concepts' sentences, for one name and one unsteered continuation."""

    def __init__(self, embedder, name: str, texts: list[str], plain: str):
        from saekit.steer.concept.judges import concept_score

        self.embedder, self.concept_score = embedder, concept_score
        self.word = embedder.embed([name])[0]
        self.on = float((embedder.embed(texts) @ self.word).mean())
        self.off = float(embedder.embed([plain])[0] @ self.word)
        pos = embedder.embed([name, *texts])
        neg = embedder.embed([*_negatives(name), plain])
        self.w, self.b = fit_logistic(pos, neg)

    def __call__(self, texts: list[str]) -> tuple[list[float], list[float]]:
        """(anchored cosine scores, classifier probabilities) of `texts`."""
        e = self.embedder.embed(texts).float()
        anchored = [self.concept_score(float(x), self.off, self.on) for x in e @ self.word]
        return anchored, torch.sigmoid(e @ self.w + self.b).tolist()


def _unsteered_of(item_id: str) -> str:
    """The unsteered continuation of the prompt a labelled sweep continuation answered."""
    src, _, idx = item_id.partition(":")
    doc = _SWEEPS.setdefault(src, json.loads((ROOT / "docs/results" / src / "sweep.json").read_text()))
    pi = doc["records"][int(idx)]["prompt_idx"]
    return next(r["text"] for r in doc["records"] if r["arm"] == "unsteered" and r["prompt_idx"] == pi)


_SWEEPS: dict[str, dict] = {}


def score_labels(embedder, jt: dict) -> list[str]:
    items = json.loads(LABELS.read_text())["sweep_items"]
    truth = [bool(it["on_concept"]) for it in items]
    anch, prob = [], []
    for it in items:
        a, p = NameJudges(embedder, it["concept"], jt[it["concept"]], _unsteered_of(it["id"]))([it["text"]])
        anch.append(a[0])
        prob.append(p[0])
    out = [f"Hand labels: the {len(items)} labelled real continuations of judge_labels.json (`sweep_items`, "
           f"{sum(truth)} on concept), each judge reading only the concept's name:", "",
           "| judge | threshold | accuracy | kappa | precision | recall |",
           "|---|---|---|---|---|---|"]  # fmt: skip
    for name, sc, thr in ((ADOPTED, anch, 0.5), (CLASSIFIER, prob, 0.5)):
        out.append(_row(name, thr, agreement(truth, [x >= thr for x in sc])))
    return out


def _row(name: str, thr: float, a: dict, counts: bool = False) -> str:
    cells = [name, f"{thr:g}"] + [_fmt(a, k) for k in ("accuracy", "kappa", "precision", "recall")]
    return "| " + " | ".join(cells + ([f"{a['claimed']} / {a['true']}"] if counts else [])) + " |"


ADOPTED = "cosine to the words, 1 = the judge's own texts (adopted)"
FIRST = "cosine to the words, 1 = the steering's texts (the first judge)"
CLASSIFIER = "logistic classifier: judge's texts vs other concepts' sentences"


def add_scores(doc: dict, embedder, jt: dict) -> None:
    """Give every try `anchored` and `classifier` score dicts (fluency and relevance as recorded)."""
    from saekit.steer.concept.judges import harmonic_mean

    plain = list(doc["unsteered"].values())
    groups: dict[tuple, list] = {}
    for t in doc["tries"]:
        groups.setdefault((t["concept"], t["prompt_idx"]), []).append(t)
    for (c, pi), ts in groups.items():
        anch, prob = NameJudges(embedder, c, jt[c], plain[pi])([t["text"] for t in ts])
        for t, a, p in zip(ts, anch, prob, strict=True):
            i = t["internal"]
            for key, x in (("anchored", a), ("classifier", p)):
                t[key] = {"concept_score": x, "fluency": i["fluency"], "relevance": i["relevance"],
                          "overall": harmonic_mean(x, i["fluency"], i["relevance"])}  # fmt: skip


def score_run(doc: dict, path: str) -> list[str]:
    from steer_carry import CARRY_CONCEPT, CARRY_FLUENCY, summarise

    ind = [t["independent"]["concept_score"] >= CARRY_CONCEPT and t["independent"]["fluency"] >= CARRY_FLUENCY
           for t in doc["tries"]]  # fmt: skip
    judges = [(ADOPTED, "anchored", 0.5), (FIRST, "internal", 0.2), (FIRST, "internal", 0.5),
              (CLASSIFIER, "classifier", 0.5)]  # fmt: skip
    grid = [(ADOPTED, "anchored", x) for x in (0.2, 0.3, 0.4, 0.6)]
    grid += [(FIRST, "internal", x) for x in (0.3, 0.4)]
    out = [f"### {Path(path).name}: {len(doc['tries'])} tries, {doc['concepts']} concepts, {doc['split']} "
           "prompts", "", "Per try: the verdict (concept >= threshold and fluency >= 0.3) against the "
           "independent judge's:", "", "| in-command judge | threshold | accuracy | kappa | precision | "
           "recall | said / truly carried |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, key, thr in judges + grid:
        pred = [t[key]["concept_score"] >= thr and t[key]["fluency"] >= CARRY_FLUENCY for t in doc["tries"]]
        out.append(_row(name, thr, agreement(ind, pred), counts=True))
    sources = sorted({t["source"] for t in doc["tries"]})
    spec = CHOSEN if "templates" in sources else CHOSEN.split(" templates/")[0] + " diffmean:1"
    out += [
        "",
        "The default ladder (both texts) replayed with each judge as its stopping rule:",
        "",
        "| in-command judge | threshold | concepts carried (verified) | pairs carried | "
        "said an SAE arm carried it | of which verified | mean tries |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, key, thr in judges:
        r = summarise(doc, spec, "both", thr, judge=key)
        lo, hi = r["concept_ci"]
        out.append(f"| {name} | {thr:g} | {r['concepts_carried']}/{r['n_concepts']} [{lo:.2f}, {hi:.2f}] | "
                   f"{r['pairs_carried']}/{r['n_pairs']} | {r['claimed']} | {r['claimed_and_verified']} | "
                   f"{r['mean_tries']:.1f} |")  # fmt: skip
    return out


def score(args) -> None:
    from saekit.steer.concept.judges import MiniLMJudge

    torch.set_num_threads(args.threads)
    jt = json.loads(Path(args.texts).read_text())
    embedder = MiniLMJudge()
    lines = score_labels(embedder, jt)
    for path in args.runs:
        doc = json.loads(Path(path).read_text())
        add_scores(doc, embedder, jt)
        lines += [""] + score_run(doc, path)
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("texts")
    t.add_argument("--sae", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("score")
    s.add_argument("--texts", required=True)
    s.add_argument("--runs", nargs="*", default=[])
    s.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    {"texts": texts, "score": score}[a.cmd](a)


if __name__ == "__main__":
    main()
