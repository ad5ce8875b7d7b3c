"""`saekit sweep`: methods × hook layers × strengths × concepts on a few prompts, judged offline.

Per SAE (one per layer) and concept: the feature is picked by contrast on the concept's texts (or
given), the DiffMean direction is computed from the same texts, then every method is run with every
strength on every prompt. All strengths of one (method, concept, prompt) run as one batch (one row
per strength, per-row strengths), which is what keeps the default sweep to minutes on 2 CPU cores.
Baselines: `diffmean` (same strength grid, activation units) and `prompting` (the concept named in
the prompt, no edit; one point). Metrics: `saekit.steer.metrics`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from saekit.errors import SteeringError

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Tell me about your weekend.",
    "Write a short story about a small town.",
    "What is a good way to spend an afternoon?",
)
PROMPTING_TEMPLATE = "{prompt} In your answer, talk about {description}."


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and how to judge it."""

    sae: tuple[str, ...]
    """SAE folder(s), one per hook layer; their provenance gives the hook point."""
    out: str = "sweep_out"
    """Output folder: sweep.json, table.md, score_vs_strength.png, tradeoff.png."""
    concepts: str = "default"
    """`default` (built-in ocean/food/war/love/religion) or a JSON file (see saekit.steer.concepts)."""
    n_concepts: int = 3
    """How many concepts to use (first n)."""
    methods: tuple[str, ...] = ("additive", "surgery", "clamp", "boost_active")
    """SAE steering methods."""
    baselines: tuple[str, ...] = ("diffmean", "prompting")
    """Baselines run in the same sweep."""
    strengths: str = "0.1norm,0.25norm,0.5norm,1norm"
    """Strength grid (units abs/norm/max); `norm` is comparable across methods and DiffMean."""
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    """Instructions to continue."""
    max_new_tokens: int = 32
    """Continuation length."""
    positions: str = "all"
    """Positions to edit: all / prompt / generated."""
    keep_error: bool = False
    """boost_active: keep the SAE error term."""
    seed: int = 0
    """Generation seed."""
    greedy: bool = True
    """Greedy decoding (else sampled with the seed)."""
    chat: bool = True
    """Use the model's chat template."""
    model: str | None = None
    """Model name (default: the first SAE's provenance, else smollm2)."""
    dtype: str = "auto"
    """Model dtype: auto (bfloat16 where the CPU has native bf16, else float32), bfloat16, float32."""
    calib_corpus: str = "shakespeare"
    """Corpus for an automatic `saekit scale` when an SAE has no calibration."""
    calib_tokens: int = 8000
    """Tokens for that automatic calibration."""
    threads: int = 2
    """torch CPU threads (1 is faster on a busy shared machine)."""
    quiet: bool = False
    """No progress bars."""


@dataclass
class SweepResult:
    """Everything the sweep measured (written to sweep.json)."""

    config: dict
    concepts: list[dict]
    records: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    best: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _ensure_calibration(sae, folder, lm, hp, cfg: SweepConfig, quiet: bool):
    from saekit.steer.calibration import calibrate_model, load_calibration, save_calibration

    cal = load_calibration(folder, d_sae=sae.d_sae)
    if cal is not None:
        return cal
    if all(s.unit == "abs" for s in _strengths(cfg)):
        return None
    from saekit.data import load_corpus

    if not quiet:
        print(
            f"saekit sweep: {folder} has no scales.json; calibrating on {cfg.calib_tokens} tokens of "
            f"{cfg.calib_corpus} (run `saekit scale` for more)"
        )
    texts = [d.text for d in load_corpus(cfg.calib_corpus)]
    cal = calibrate_model(
        lm.model,
        lm.tokenizer,
        sae,
        hp,
        texts,
        tokens=cfg.calib_tokens,
        quiet=quiet,
        model_name=lm.name,
        corpus=cfg.calib_corpus,
    )
    save_calibration(folder, cal)
    return cal


def _strengths(cfg: SweepConfig):
    from saekit.steer.strength import parse_strengths

    return parse_strengths(cfg.strengths)


@torch.no_grad()
def run_sweep(cfg: SweepConfig, *, lm=None, judge=None, log: Callable[[str], None] = print) -> SweepResult:
    """Run the whole sweep (library entry point of `saekit sweep`)."""
    from tqdm import tqdm

    from saekit.steer import metrics as MT
    from saekit.steer.apply import direction_edit, sae_edit, steering
    from saekit.steer.concepts import load_concepts
    from saekit.steer.diffmean import diffmean_direction, pick_feature, text_activations
    from saekit.steer.generate import GenerationConfig, decode_rows, encode_prompt, generate_ids
    from saekit.steer.methods import METHOD_SPACE, check_method, feature_gain
    from saekit.steer.session import hook_point_of, load_lm, load_sae_folder, model_name_of
    from saekit.steer.strength import resolve

    t0 = time.perf_counter()
    if not cfg.sae:
        raise SteeringError("give at least one --sae folder")
    for m in cfg.methods:
        check_method(m)
    bad = set(cfg.baselines) - {"diffmean", "prompting"}
    if bad:
        raise SteeringError(f"unknown baseline(s) {sorted(bad)}; choose from diffmean, prompting")
    strengths = _strengths(cfg)
    concepts = load_concepts(cfg.concepts, cfg.n_concepts)
    saes = [(f, load_sae_folder(f).eval()) for f in cfg.sae]
    if lm is None:
        lm = load_lm(model_name_of(saes[0][1], cfg.model), cfg.dtype)
    judge = judge or MT.MiniLMJudge()
    model, tok = lm.model, lm.tokenizer
    eos = getattr(tok, "eos_token_id", None)
    gen = GenerationConfig(
        max_new_tokens=cfg.max_new_tokens, greedy=cfg.greedy, seed=cfg.seed, chat=None if cfg.chat else False
    )
    prompt_ids = [encode_prompt(tok, p, gen.chat) for p in cfg.prompts]
    result = SweepResult(config=asdict(cfg), concepts=[])

    # concept judge's 1-anchor: how similar the concept's own reference texts are to its description
    desc_emb = judge.embed([c.description for c in concepts])
    text_emb = [judge.embed(list(c.texts)) for c in concepts]
    on_anchor = [float((text_emb[i] @ desc_emb[i]).mean()) for i in range(len(concepts))]

    def generate(ids_1P, n_rows, edit=None, hp=None, dtype=torch.float32, device=None):
        ids = ids_1P.repeat(n_rows, 1)
        if edit is None:
            return decode_rows(tok, generate_ids(model, ids, gen, eos), eos)
        with steering(
            model,
            hp,
            edit,
            compute_dtype=dtype,
            device=device,
            positions=cfg.positions,
            prompt_len=ids.shape[1],
        ) as tr:
            return decode_rows(tok, generate_ids(model, ids, gen, eos, on_reset=tr.reset), eos)

    # unsteered and prompting continuations do not depend on the layer: generate them once
    plain = [generate(p, 1)[0] for p in prompt_ids]
    plain_prompt_cos = judge.cosine([c.text for c in plain], list(cfg.prompts)).tolist()
    plain_concept_cos = [judge.cosine([c.text for c in plain], [k.description]).tolist() for k in concepts]
    prompted = {}
    if "prompting" in cfg.baselines:
        for ci, c in enumerate(concepts):
            for pi, p in enumerate(cfg.prompts):
                ids = encode_prompt(
                    tok, PROMPTING_TEMPLATE.format(prompt=p, description=c.description), gen.chat
                )
                prompted[ci, pi] = generate(ids, 1)[0]

    runs = [m for m in cfg.methods] + (["diffmean"] if "diffmean" in cfg.baselines else [])
    total = len(saes) * len(concepts) * len(cfg.prompts) * (len(runs) + (1 if prompted else 0))
    bar = tqdm(total=total, disable=cfg.quiet, desc="sweep", unit="run")
    for folder, sae in saes:
        hp = hook_point_of(sae)
        layer = sae.cfg.provenance.layer
        cal = _ensure_calibration(sae, folder, lm, hp, cfg, cfg.quiet)
        acts = [text_activations(model, tok, hp, c.texts) for c in concepts]
        chosen: list[int] = []
        for ci, c in enumerate(concepts):
            neg = torch.cat([acts[k] for k in range(len(concepts)) if k != ci])
            if c.feature is not None:
                feat, contrast = int(c.feature), None
            else:
                choice = pick_feature(sae, acts[ci], neg, exclude=chosen)
                feat, contrast = choice.feature, choice.contrast
            chosen.append(feat)
            dm = diffmean_direction(acts[ci], neg)
            gain = float(feature_gain(sae, [feat])[0])
            fmax = None if cal is None else float(cal.max_active[feat])
            mean_norm = None if cal is None else cal.mean_norm
            result.concepts.append(
                {
                    "layer": layer,
                    "hook_point": hp,
                    "sae": folder,
                    "concept": c.name,
                    "description": c.description,
                    "feature": feat,
                    "contrast": contrast,
                    "gain": gain,
                    "feature_max": fmax,
                    "diffmean_norm": float(dm.norm()),
                }
            )

            def score(pi, conts, method, labels, abs_vals):
                sc = MT.score_continuations(
                    model, [x.token_ids for x in conts], sae=sae, hook_point=hp, feature=feat
                )
                ref = ref_scores[pi]
                texts = [x.text for x in conts]
                ccos = judge.cosine(texts, [c.description]).tolist()
                pcos = judge.cosine(texts, [cfg.prompts[pi]]).tolist()
                for k, x in enumerate(conts):
                    concept = MT.concept_score(ccos[k], plain_concept_cos[ci][pi], on_anchor[ci])
                    flu = MT.fluency_score(sc[k].nll, ref.nll, sc[k].distinct2, ref.distinct2)
                    rel = MT.clip01(pcos[k] / plain_prompt_cos[pi]) if plain_prompt_cos[pi] > 0 else 0.0
                    result.records.append(
                        {
                            "layer": layer,
                            "hook_point": hp,
                            "concept": c.name,
                            "feature": feat,
                            "method": method,
                            "strength": labels[k],
                            "strength_abs": abs_vals[k],
                            "prompt_idx": pi,
                            "text": x.text,
                            "concept_cos": ccos[k],
                            "prompt_cos": pcos[k],
                            "nll": sc[k].nll,
                            "distinct2": sc[k].distinct2,
                            "reread": sc[k].reread,
                            "reread_rel": (sc[k].reread / fmax) if fmax else None,
                            "concept_score": concept,
                            "fluency": flu,
                            "relevance": rel,
                            "overall": MT.harmonic_mean(concept, flu, rel),
                        }
                    )

            ref_scores = MT.score_continuations(
                model, [x.token_ids for x in plain], sae=sae, hook_point=hp, feature=feat
            )
            for pi in range(len(cfg.prompts)):
                score(pi, [plain[pi]], "unsteered", ["0"], [0.0])
            for method in runs:
                space = "activation" if method == "diffmean" else METHOD_SPACE[method]
                abs_vals = [
                    resolve(
                        s,
                        space,
                        gain=gain,
                        mean_norm=mean_norm,
                        feature_max=fmax,
                        feature=feat,
                        sae_folder=folder,
                    )
                    for s in strengths
                ]
                s_B11 = torch.tensor(abs_vals, dtype=torch.float32).reshape(-1, 1, 1)
                if method == "diffmean":
                    edit, dtype, dev = direction_edit(dm, s_B11), torch.float32, None
                else:
                    edit = sae_edit(sae, method, [feat], s_B11.to(sae.dtype), keep_error=cfg.keep_error)
                    dtype, dev = sae.dtype, sae.device
                for pi in range(len(cfg.prompts)):
                    conts = generate(prompt_ids[pi], len(strengths), edit, hp, dtype, dev)
                    score(pi, conts, method, [str(s) for s in strengths], abs_vals)
                    bar.update(1)
            for pi in range(len(cfg.prompts)):
                if (ci, pi) in prompted:
                    score(pi, [prompted[ci, pi]], "prompting", ["prompt"], [None])
                    bar.update(1)
    bar.close()
    result.summary, result.best = summarize(result.records)
    result.seconds = time.perf_counter() - t0
    return result


METRICS = ("overall", "concept_score", "fluency", "relevance", "reread_rel", "concept_cos", "nll")


def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else None


def summarize(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Means per (layer, method, strength) over concepts and prompts; best strength per method.

    `best` gives, per (layer, method), the single strength with the highest mean overall score and
    (AxBench-style) the mean over concepts of each concept's best strength.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    order: list[tuple] = []
    for r in records:
        key = (r["layer"], r["method"], r["strength"])
        if key not in groups:
            order.append(key)
        groups[key].append(r)
    summary = []
    for key in order:
        rows = groups[key]
        summary.append(
            {
                "layer": key[0],
                "method": key[1],
                "strength": key[2],
                "n": len(rows),
                **{m: _mean([r.get(m) for r in rows]) for m in METRICS},
            }
        )
    best = []
    by_method: dict[tuple, list[dict]] = defaultdict(list)
    for s in summary:
        by_method[s["layer"], s["method"]].append(s)
    for (layer, method), rows in by_method.items():
        top = max(rows, key=lambda s: s["overall"] or 0.0)
        per_concept: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in records:
            if r["layer"] == layer and r["method"] == method:
                per_concept[r["concept"]][r["strength"]].append(r["overall"])
        oracle = _mean([max(_mean(v) for v in d.values()) for d in per_concept.values()])
        best.append(
            {
                "layer": layer,
                "method": method,
                "best_strength": top["strength"],
                "overall": top["overall"],
                "concept_score": top["concept_score"],
                "fluency": top["fluency"],
                "relevance": top["relevance"],
                "per_concept_best_overall": oracle,
            }
        )
    return summary, best


def format_table(result: SweepResult) -> str:
    """Markdown tables: summary per method x strength, then best per method."""

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    lines = [
        "| layer | method | strength | overall | concept | fluency | relevance | reread/max | concept cos | nll |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result.summary:
        lines.append(
            f"| {s['layer']} | {s['method']} | {s['strength']} | {f(s['overall'])} | {f(s['concept_score'])} | "
            f"{f(s['fluency'])} | {f(s['relevance'])} | {f(s['reread_rel'])} | {f(s['concept_cos'])} | {f(s['nll'])} |"
        )
    lines += [
        "",
        "| layer | method | best strength | overall | concept | fluency | relevance | per-concept best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in sorted(result.best, key=lambda b: -(b["overall"] or 0)):
        lines.append(
            f"| {b['layer']} | {b['method']} | {b['best_strength']} | {f(b['overall'])} | {f(b['concept_score'])} | "
            f"{f(b['fluency'])} | {f(b['relevance'])} | {f(b['per_concept_best_overall'])} |"
        )
    return "\n".join(lines)


def save_result(result: SweepResult, out: str | Path) -> dict[str, Path]:
    """sweep.json, table.md and the two PNGs, all written atomically."""
    from saekit.atomic import write_json_atomic, write_text_atomic
    from saekit.viz.steer_plots import plot_score_vs_strength, plot_tradeoff

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "sweep.json",
        "table": out / "table.md",
        "strength_png": out / "score_vs_strength.png",
        "tradeoff_png": out / "tradeoff.png",
    }
    write_json_atomic(paths["json"], {"schema_version": 1, "format": "saekit.sweep", **asdict(result)})
    write_text_atomic(paths["table"], format_table(result) + "\n")
    plot_score_vs_strength(result.summary, paths["strength_png"])
    plot_tradeoff(result.summary, paths["tradeoff_png"])
    return paths
