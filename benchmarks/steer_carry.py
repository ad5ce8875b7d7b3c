"""Carry rate of `saekit steer --concept`: for how many concepts does an SAE arm carry the concept?

A concept counts as carried when, on at least one test prompt, the arm the verification ladder keeps
is an SAE arm *and* an independent judge sees the concept in its text. The independent judge is the
sweep's MiniLM concept score (>= 0.5, the threshold validated in docs/results/judge_agreement.md) and
fluency (>= 0.3), anchored on the concept's hand-written description and sentences, which the steering
never sees: `steer --concept WORDS` only gets the concept's name.

`run` generates every rung of a wide ladder for every (concept, prompt) in one batched generation per
prompt (the recipe's arm at 1x/2x/4x; DiffMean decomposed into 4 and 16 SAE directions at 1x/2x;
DiffMean at 1x/2x), for three sources of concept texts (`saekit.steer.concept.steering.concept_texts`:
templates, the model's own generated texts, both), and judges each text twice: with the judge the
ladder uses (the words and their texts) and with the independent one. `table` then replays any
ladder over those tries exactly as `saekit.steer.concept.ladder` walks it (stop at the first try its
judge sees, else keep the best) and reports the carry rates with 95% intervals.

    OMP_NUM_THREADS=1 python benchmarks/steer_carry.py run --sae SAE --concepts protocol \
        --prompts protocol --split train --n-prompts 3 --out dev.json        # choose the ladder here
    OMP_NUM_THREADS=1 python benchmarks/steer_carry.py run --sae SAE --concepts heldout \
        --prompts heldout --split test --out heldout.json                    # report here
    python benchmarks/steer_carry.py table dev.json heldout.json --paired
    OMP_NUM_THREADS=1 python benchmarks/steer_carry.py check --sae SAE --first --out check.json

Greedy decoding in a batch can differ from one-row decoding by a tie flip; `saekit steer --concept`
itself is re-run on the held-out concepts by `check` for that reason.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / "saekit" / "steer" / "concept" / "data"
CONCEPT_SETS = {"protocol": DATA / "concepts.json", "heldout": DATA / "heldout_concepts.json"}
PROMPT_SETS = {"protocol": DATA / "prompts.json", "heldout": DATA / "heldout_prompts.json"}
SOURCES = ("templates", "generated", "both")
CARRY_CONCEPT, CARRY_FLUENCY = 0.5, 0.3
WIDE = dict(recipe_factors=(1.0, 2.0, 4.0), decompose_k=(4, 16), decompose_factors=(1.0, 2.0),
            diffmean_factors=(1.0, 2.0))  # fmt: skip
KEYS = ("concept_score", "fluency", "relevance", "overall")


def _load_set(spec: str):
    from saekit.steer.concept.concepts import load_concepts

    return load_concepts(str(CONCEPT_SETS.get(spec, spec)))


@dataclass
class Rung:
    """One try of the wide ladder for one concept: which texts, which arm, how strong."""

    source: str
    concept: object
    """The Concept the ladder's own judge scores against (the words and their texts)."""
    label: str
    role: str
    """`recipe`, `decompose4`, `decompose16` or `diffmean` (what ladder specs name)."""
    arm: object
    factor: float
    strengths: list[float]


def concept_rungs(s, judge, words: str, source: str, gen, bundled_match: bool) -> tuple[list[Rung], dict]:
    """Every try of the wide ladder for `words` with concept texts from `source`, built as `saekit steer
    --concept` builds them (its recipe, its evidence, `escalation_stages`)."""
    from saekit.steer.concept.arms import arm_strengths, make_arm, parse_arm
    from saekit.steer.concept.steering import (
        DEFAULT_RECIPE,
        concept_evidence,
        concept_texts,
        escalation_stages,
        needed_selections,
    )
    from saekit.steer.session import layer_of
    from saekit.steer.strength import parse_strength

    texts = concept_texts(words, judge, lm=s.lm, chat=gen.chat, source=source, bundled_match=bundled_match)
    recipe = DEFAULT_RECIPE.for_concept(texts[0].name, layer_of(s.sae, s.hook_point))
    sel, _ = parse_arm(recipe.arm)
    concept, ev = concept_evidence(s, words, judge=judge, chat=gen.chat, methods=needed_selections(sel),
                                   texts=texts)  # fmt: skip
    info = {"concept": words, "source": source, "matched": concept.name, "texts": list(concept.texts),
            "recipe": [recipe.arm, recipe.strength]}  # fmt: skip
    if sel != "diffmean" and sel not in ev.selections:
        info["error"] = ev.errors.get(sel)
        return [], info
    arm = make_arm(recipe.arm, ev.selections.get(sel), ev.diffmean)
    base = arm_strengths(arm, parse_strength(recipe.strength), s.sae, s.calibration, s.sae_folder)
    stages = escalation_stages(s, recipe, arm, base, ev, **WIDE)
    info["stages"] = {st.label: list(st.arm.features) for st in stages}
    rungs = [
        Rung(source, concept, st.label, "recipe" if i == 0 else st.label.split(":")[0], st.arm, f,
             [f * x for x in st.base])
        for i, st in enumerate(stages) for f in st.factors
    ]  # fmt: skip
    return rungs, info


def judge_rows(s, judge, concept, prompt: str, plain, conts) -> list[dict]:
    """Scores of `conts` against `concept`, anchored on the unsteered continuation `plain`."""
    from saekit.steer.concept.judging import PairJudge, score_batch

    pj = PairJudge(s.lm.model, judge, concept, prompt, plain)
    rows = score_batch(s.lm.model, judge, pj.refs, 0, 0, concept.description, prompt, conts)
    return [{k: r[k] for k in KEYS} for r in rows]


def run(args) -> None:
    import os

    from saekit.steer.apply import steering
    from saekit.steer.concept.arms import arm_edit, batched_edit
    from saekit.steer.concept.concepts import load_prompts
    from saekit.steer.concept.judges import MiniLMJudge
    from saekit.steer.generate import GenerationConfig, decode_rows, encode_prompt, generate_ids
    from saekit.steer.session import open_session

    torch.set_num_threads(args.threads)
    t0, cpu0 = time.perf_counter(), time.process_time()
    s = open_session(args.sae)
    lm, judge = s.lm, MiniLMJudge()
    concepts = _load_set(args.concepts)[: args.n_concepts]
    train, test = load_prompts(str(PROMPT_SETS.get(args.prompts, args.prompts)))
    prompts = (train if args.split == "train" else test)[: args.n_prompts]
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    eos = getattr(lm.tokenizer, "eos_token_id", None)
    ids = {p: encode_prompt(lm.tokenizer, p, gen.chat) for p in prompts}
    plain = {p: decode_rows(lm.tokenizer, generate_ids(lm.model, ids[p], gen, eos), eos)[0] for p in prompts}
    doc = {"sae": args.sae, "concepts": args.concepts, "prompts": args.prompts, "split": args.split,
           "max_new_tokens": args.max_new_tokens, "ladder": {k: list(v) for k, v in WIDE.items()},
           "unsteered": {p: plain[p].text for p in prompts}, "concept_info": [], "tries": []}  # fmt: skip
    for c in concepts:
        rungs: list[Rung] = []
        for src in args.sources.split(","):
            more, info = concept_rungs(s, judge, c.name, src, gen, bundled_match=args.concepts != "protocol")
            rungs += more
            doc["concept_info"].append(info)
        for pi, p in enumerate(prompts):
            edits = [
                (1, arm_edit(r.arm, s.sae, torch.tensor([r.strengths], device=s.sae.device))) for r in rungs
            ]
            with steering(lm.model, s.hook_point, batched_edit(edits), prompt_len=ids[p].shape[1]) as tr:
                out = generate_ids(lm.model, ids[p].repeat(len(rungs), 1), gen, eos, on_reset=tr.reset)
            conts = decode_rows(lm.tokenizer, out, eos)
            independent = judge_rows(s, judge, c, p, plain[p], conts)
            internal: list[dict | None] = [None] * len(rungs)
            for src in dict.fromkeys(r.source for r in rungs):
                rows = [i for i, r in enumerate(rungs) if r.source == src]
                scores = judge_rows(s, judge, rungs[rows[0]].concept, p, plain[p], [conts[i] for i in rows])
                for i, sc in zip(rows, scores):
                    internal[i] = sc
            for i, r in enumerate(rungs):
                doc["tries"].append({"concept": c.name, "source": r.source, "prompt_idx": pi,
                                     "stage": r.label, "rung": r.role, "sae_arm": r.label != "diffmean",
                                     "factor": r.factor,
                                     "features": list(r.arm.features), "text": conts[i].text,
                                     "internal": internal[i], "independent": independent[i]})  # fmt: skip
            print(f"{time.perf_counter() - t0:7.0f}s {c.name} prompt {pi}: {len(rungs)} rungs", flush=True)
    doc["seconds"] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}
    doc["loadavg"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out} ({len(doc['tries'])} tries, {doc['seconds']['wall']:.0f} s wall)")


def check(args) -> None:
    """`saekit steer --concept NAME --prompt P` itself (library call, default verification) on every
    concept x prompt, each kept text re-judged by the independent judge; with `--first`, a concept's
    remaining prompts are skipped once an SAE arm carried it (the carry-rate question)."""
    import os

    from saekit.steer.concept.arms import is_sae_arm
    from saekit.steer.concept.concepts import load_prompts
    from saekit.steer.concept.judges import MiniLMJudge
    from saekit.steer.concept.steering import steer_concept
    from saekit.steer.generate import GenerationConfig
    from saekit.steer.session import open_session

    torch.set_num_threads(args.threads)
    t0, cpu0 = time.perf_counter(), time.process_time()
    s = open_session(args.sae)
    judge = MiniLMJudge()
    concepts = _load_set(args.concepts)[: args.n_concepts]
    train, test = load_prompts(str(PROMPT_SETS.get(args.prompts, args.prompts)))
    prompts = (train if args.split == "train" else test)[: args.n_prompts]
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    doc = {"sae": args.sae, "concepts": args.concepts, "prompts": args.prompts, "split": args.split,
           "source": args.source, "max_new_tokens": args.max_new_tokens, "results": []}  # fmt: skip
    for c in concepts:
        for pi, p in enumerate(prompts):
            t1 = time.perf_counter()
            res = steer_concept(s, c.name, p, gen, judge=judge, source=args.source)
            ind = judge_rows(s, judge, c, p, res.pair.unsteered, [res.pair.steered])[0]
            sae = is_sae_arm(res.arm.name)
            doc["results"].append({
                "concept": c.name, "prompt_idx": pi, "matched": res.concept.name, "kept": res.arm.name,
                "features": list(res.arm.features), "weights": list(res.arm.weights), "sae_arm": sae,
                "carried": sae and _visible(ind), "claimed": sae and _visible(res.scores[1]),
                "tries": [{**t.scores, "factor": t.factor} for t in res.tries], "internal": res.scores[1],
                "independent": ind, "unsteered": res.pair.unsteered.text, "steered": res.pair.steered.text,
                "seconds": time.perf_counter() - t1,
            })  # fmt: skip
            r = doc["results"][-1]
            print(f"{time.perf_counter() - t0:7.0f}s {c.name} {pi}: kept {r['kept']} {r['features'][:4]} "
                  f"claimed {r['claimed']} carried {r['carried']} ({len(r['tries'])} tries, "
                  f"{r['seconds']:.0f} s)", flush=True)  # fmt: skip
            if args.first and r["carried"]:
                break
    doc["seconds"] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}
    doc["loadavg"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    done = {r["concept"] for r in doc["results"] if r["carried"]}
    print(f"carried by an SAE arm (independent judge): {len(done)}/{len(concepts)} concepts "
          f"{sorted(done)}; 95% CI {wilson(len(done), len(concepts))}; wrote {args.out}")  # fmt: skip


# ------------------------------------------------------------------------------------------- replay


def parse_ladder(spec: str, source: str) -> list[tuple[str, str, float]]:
    """`recipe:1,2 decompose16:1,2 templates/recipe:1 diffmean:1` -> [(source, rung, factor), ...] in
    order (`recipe` = the recipe's arm, whatever it is for the concept; `SOURCE/` takes the rung built
    from that source's texts, otherwise `source`'s)."""
    out = []
    for part in spec.split():
        stage, _, facs = part.partition(":")
        src, _, rung = stage.rpartition("/")
        out += [(src or source, rung, float(f)) for f in facs.split(",")]
    return out


LADDERS = {
    "recipe arm only (1x, 2x, 4x)": "recipe:1,2,4",
    "before (recipe 1x,2x,4x; DiffMean)": "recipe:1,2,4 diffmean:1",
    "recipe; decompose4 1x,2x; DiffMean": "recipe:1,2,4 decompose4:1,2 diffmean:1",
    "recipe; decompose16 1x,2x; DiffMean": "recipe:1,2,4 decompose16:1,2 diffmean:1",
    "recipe; decompose4; decompose16; DiffMean": "recipe:1,2,4 decompose4:1,2 decompose16:1,2 diffmean:1",
    "decompose16 1x,2x; recipe; DiffMean": "decompose16:1,2 recipe:1,2,4 diffmean:1",
    "chosen: recipe 1x,2x; decompose4; decompose16; again on templates; DiffMean": (
        "recipe:1,2 decompose4:1,2 decompose16:1,2 templates/recipe:1,2 templates/decompose4:1,2 "
        "templates/decompose16:1,2 diffmean:1"
    ),
    "DiffMean alone (1x, 2x), reference": "diffmean:1,2",
}
"""Ladders replayed by `table` (`saekit steer --concept`'s default since this measurement: the `chosen`
one with `both` texts, i.e. `escalation_stages` then `template_stages`)."""


def _visible(sc: dict) -> bool:
    return sc["concept_score"] >= CARRY_CONCEPT and sc["fluency"] >= CARRY_FLUENCY


def _ladder_visible(sc: dict, min_concept: float) -> bool:
    return sc["concept_score"] >= min_concept and sc["fluency"] >= CARRY_FLUENCY


def replay(tries: dict[tuple, dict], ladder: list[tuple[str, str, float]], min_concept: float,
           judge: str = "internal"):  # fmt: skip
    """(the kept try, how many were generated) for one (concept, prompt) under `ladder`, as
    `saekit.steer.concept.ladder.escalate` walks it; `tries` maps (source, rung, factor) to a try.
    `judge`: which of a try's score dicts the ladder reads (`internal`: the words judge recorded by `run`;
    another key added to the tries, e.g. by benchmarks/concept_judge.py)."""
    seq = [tries[k] for k in ladder if k in tries]
    for n, t in enumerate(seq):
        if _ladder_visible(t[judge], min_concept):
            return t, n + 1
    best = max(seq, key=lambda t: (t[judge]["overall"], t[judge]["concept_score"]))
    return best, len(seq)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def cluster_boot(per_concept: dict[str, list[bool]], reps: int = 2000, seed: int = 0):
    rng = random.Random(seed)
    names = sorted(per_concept)
    vals = []
    for _ in range(reps):
        pick = [rng.choice(names) for _ in names]
        xs = [x for n in pick for x in per_concept[n]]
        vals.append(sum(xs) / len(xs))
    vals.sort()
    return vals[int(0.025 * reps)], vals[int(0.975 * reps) - 1]


def summarise(doc: dict, ladder_spec: str, source: str, min_concept: float, judge: str = "internal") -> dict:
    """Carry rates of one ladder and source over a run's (concept, prompt) pairs (`judge`: see `replay`)."""
    ladder = parse_ladder(ladder_spec, source)
    groups: dict[tuple, dict] = {}
    for t in doc["tries"]:
        groups.setdefault((t["concept"], t["prompt_idx"]), {})[(t["source"], t["rung"], t["factor"])] = t
    verified, claimed, agree, n_tries = {}, {}, [], []
    for (c, _), ts in groups.items():
        kept, n = replay(ts, ladder, min_concept, judge)
        v = kept["sae_arm"] and _visible(kept["independent"])
        cl = kept["sae_arm"] and _ladder_visible(kept[judge], min_concept)
        verified.setdefault(c, []).append(v)
        claimed.setdefault(c, []).append(cl)
        if cl:
            agree.append(v)
        n_tries.append(n)
    n_c = len(verified)
    k_c = sum(any(v) for v in verified.values())
    pairs = [x for v in verified.values() for x in v]
    return {
        "concepts_carried": k_c, "n_concepts": n_c, "concept_ci": wilson(k_c, n_c),
        "pairs_carried": sum(pairs), "n_pairs": len(pairs), "pair_ci": cluster_boot(verified),
        "claimed": sum(x for v in claimed.values() for x in v),
        "claimed_and_verified": sum(agree), "mean_tries": sum(n_tries) / max(1, len(n_tries)),
        "per_concept": {c: sum(v) for c, v in verified.items()},
    }  # fmt: skip


def table(args) -> None:
    for path in args.runs:
        doc = json.loads(Path(path).read_text())
        secs = doc.get("seconds", {})
        print(f"\n### {path}: concepts {doc['concepts']}, prompts {doc['prompts']} ({doc['split']}), "
              f"{doc['max_new_tokens']} new tokens; run {secs.get('wall', 0):.0f} s wall, "
              f"{secs.get('cpu', 0):.0f} s CPU, load average {doc.get('loadavg')}\n")  # fmt: skip
        print("| concept texts | ladder (judge threshold inside the ladder) | concepts carried | 95% CI | "
              "(concept, prompt) pairs carried | 95% CI | ladder said SAE carried (of which verified) | "
              "mean tries |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        sources = sorted({t["source"] for t in doc["tries"]}, key=SOURCES.index)
        for src in sources:
            for name, spec in LADDERS.items():
                if "templates/" in spec and (src == "templates" or "templates" not in sources):
                    continue  # the second pass on templates needs a templates run beside this source
                for mc in args.min_concept:
                    r = summarise(doc, spec, src, mc)
                    if name.startswith("DiffMean alone"):  # carried by DiffMean, not an SAE arm
                        r = _diffmean_reference(doc, src)
                    lo, hi = r["concept_ci"]
                    plo, phi = r["pair_ci"]
                    print(f"| {src} | {name} ({mc:g}) | {r['concepts_carried']}/{r['n_concepts']} | "
                          f"[{lo:.2f}, {hi:.2f}] | {r['pairs_carried']}/{r['n_pairs']} | "
                          f"[{plo:.2f}, {phi:.2f}] | {r['claimed']} ({r['claimed_and_verified']}) | "
                          f"{r['mean_tries']:.1f} |")  # fmt: skip
                    if name.startswith("DiffMean alone"):
                        break
        if args.paired:
            print("\n" + "\n".join(paired_table(doc)))
        if args.per_concept:
            spec = LADDERS[args.per_concept]
            for src in sources:
                r = summarise(doc, spec, src, args.min_concept[0])
                print(f"\nper concept, {src}, {args.per_concept}: " +
                      ", ".join(f"{c} {k}" for c, k in r["per_concept"].items()))  # fmt: skip


def paired_table(doc: dict, reps: int = 2000) -> list[str]:
    """Independent judge's overall / concept score per rung and its paired difference to DiffMean at
    the same factor (95% bootstrap over the (concept, prompt) pairs): the same-strength comparison."""
    rng = random.Random(0)
    by: dict[tuple, dict] = {}
    for t in doc["tries"]:
        by.setdefault((t["source"], t["rung"], t["factor"]), {})[(t["concept"], t["prompt_idx"])] = t
    head = "| concept texts | arm | factor | overall (independent) | concept | fluency | "
    lines = [head + "overall - DiffMean same factor | 95% CI | n |", "|---|---|---|---|---|---|---|---|---|"]
    for (src, role, f), rows in sorted(
        by.items(), key=lambda kv: (SOURCES.index(kv[0][0]), kv[0][1], kv[0][2])
    ):
        dm = by.get((src, "diffmean", f), {})
        keys = sorted(set(rows) & set(dm))
        mean = {k: sum(t["independent"][k] for t in rows.values()) / len(rows) for k in KEYS}
        if role == "diffmean" or not keys:
            diff, ci = "", ""
        else:
            d = [rows[x]["independent"]["overall"] - dm[x]["independent"]["overall"] for x in keys]
            boots = sorted(sum(rng.choice(d) for _ in d) / len(d) for _ in range(reps))
            diff = f"{sum(d) / len(d):+.3f}"
            ci = f"[{boots[int(0.025 * reps)]:+.3f}, {boots[int(0.975 * reps) - 1]:+.3f}]"
        lines.append(f"| {src} | {role} | {f:g}x | {mean['overall']:.3f} | {mean['concept_score']:.3f} | "
                     f"{mean['fluency']:.3f} | {diff} | {ci} | {len(rows)} |")  # fmt: skip
    return lines


def _diffmean_reference(doc: dict, source: str) -> dict:
    """Would DiffMean (1x or 2x, first the judge sees) carry it: the non-SAE reference."""
    per: dict[str, list[bool]] = {}
    for t in doc["tries"]:
        if t["source"] == source and t["stage"] == "diffmean":
            per.setdefault(t["concept"], {})
            per[t["concept"]].setdefault(t["prompt_idx"], False)
            per[t["concept"]][t["prompt_idx"]] |= _visible(t["independent"])
    verified = {c: list(v.values()) for c, v in per.items()}
    k = sum(any(v) for v in verified.values())
    pairs = [x for v in verified.values() for x in v]
    return {"concepts_carried": k, "n_concepts": len(verified), "concept_ci": wilson(k, len(verified)),
            "pairs_carried": sum(pairs), "n_pairs": len(pairs), "pair_ci": cluster_boot(verified),
            "claimed": 0, "claimed_and_verified": 0, "mean_tries": 2.0, "per_concept": {}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)  # the flags `run` and `check` share
    common.add_argument("--sae", required=True)
    common.add_argument("--concepts", default="heldout")
    common.add_argument("--prompts", default="heldout")
    common.add_argument("--split", default="test", choices=("train", "test"))
    common.add_argument("--n-concepts", type=int, default=None)
    common.add_argument("--n-prompts", type=int, default=None)
    common.add_argument("--max-new-tokens", type=int, default=40)
    common.add_argument("--threads", type=int, default=1)
    common.add_argument("--out", required=True)
    r = sub.add_parser("run", parents=[common])
    r.add_argument("--sources", default=",".join(SOURCES))
    k = sub.add_parser("check", parents=[common])
    k.add_argument("--source", default="templates", choices=SOURCES)
    k.add_argument("--first", action="store_true", help="stop a concept at its first carried prompt")
    t = sub.add_parser("table")
    t.add_argument("runs", nargs="+")
    t.add_argument("--min-concept", type=float, nargs="+", default=[0.2, 0.5])
    t.add_argument("--per-concept", default=None, help="a LADDERS name to break down per concept")
    t.add_argument("--paired", action="store_true", help="per-rung scores and paired differences to DiffMean")
    args = ap.parse_args()
    {"run": run, "check": check, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
