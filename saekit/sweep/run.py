"""`saekit sweep`: the honest steering protocol — arms × layers × strengths × concepts × prompts.

Per SAE (one per layer) and concept, features are chosen every way `saekit.steer.concept.evidence` knows
(input contrast, output score, DiffMean decomposition, SAE-TS), each becomes one or more arms
(`input:clamp`, `output:additive`, ...) beside DiffMean; unsteered and prompting continuations are
generated once. All arms × strengths of one (concept, prompt) run as one batch with per-row edits.
Prompts come split into train and test: `saekit.sweep.protocol` chooses each arm's strength (and
layer) on train and reports test means with bootstrap intervals. Judges: `saekit.steer.concept.judging`.
The configuration and presets: `saekit.sweep.config`; partial saves: `saekit.sweep.partial`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saekit.errors import SteeringError
from saekit.sweep.config import PROMPTING_TEMPLATE, SweepConfig, SweepResult, config_dict
from saekit.sweep.partial import save_partial


@dataclass
class Plan:
    """The loaded pieces every step of the sweep needs."""

    cfg: SweepConfig
    lm: Any
    judge: Any
    concepts: list
    prompts: list[str]
    splits: list[str]
    prompt_ids: list[torch.Tensor]
    gen: Any
    eos: int | None
    strengths: list
    saes: list[tuple[str, Any]]


def _plan(cfg: SweepConfig, lm, judge) -> Plan:
    from saekit.device import resolve_device
    from saekit.steer.concept import judges as MT
    from saekit.steer.concept.arms import parse_arm
    from saekit.steer.concept.concepts import load_concepts, load_prompts
    from saekit.steer.generate import GenerationConfig, encode_prompt
    from saekit.steer.session import load_lm, load_sae_folder, model_name_of
    from saekit.steer.strength import parse_strengths

    if not cfg.sae:
        raise SteeringError("give at least one --sae folder")
    for arm in cfg.arms:
        parse_arm(arm)
    device = resolve_device(cfg.device)
    saes = [(f, load_sae_folder(f).to(device).eval()) for f in cfg.sae]
    lm = lm or load_lm(model_name_of(saes[0][1], cfg.model), cfg.dtype)
    lm.model.to(device)
    train, test = load_prompts(cfg.prompts, cfg.n_train, cfg.n_test)
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, greedy=cfg.greedy, seed=cfg.seed,
                           chat=None if cfg.chat else False)  # fmt: skip
    prompts = train + test
    return Plan(
        cfg, lm, judge or MT.MiniLMJudge(), load_concepts(cfg.concepts, cfg.n_concepts), prompts,
        ["train"] * len(train) + ["test"] * len(test),
        [encode_prompt(lm.tokenizer, p, gen.chat) for p in prompts],
        gen, getattr(lm.tokenizer, "eos_token_id", None), parse_strengths(cfg.strengths), saes,
    )  # fmt: skip


def _generate(plan: Plan, ids_1P: torch.Tensor, n_rows: int, edit=None, hp: str | None = None):
    from saekit.steer.apply import steering
    from saekit.steer.generate import decode_rows, generate_ids

    ids, tok, model = ids_1P.repeat(n_rows, 1), plan.lm.tokenizer, plan.lm.model
    if edit is None:
        return decode_rows(tok, generate_ids(model, ids, plan.gen, plan.eos), plan.eos)
    with steering(model, hp, edit, positions=plan.cfg.positions, prompt_len=ids.shape[1]) as tr:
        return decode_rows(tok, generate_ids(model, ids, plan.gen, plan.eos, on_reset=tr.reset), plan.eos)


def _record(plan: Plan, scored: dict, **keys) -> dict:
    pi = keys["prompt_idx"]
    return {**keys, "split": plan.splits[pi], **scored}


def _baseline_records(plan: Plan, plain, refs) -> list[dict]:
    """Unsteered and prompting continuations (they do not depend on the layer: layer -1)."""
    from saekit.steer.concept.judging import score_batch
    from saekit.steer.generate import encode_prompt

    out = []
    for ci, c in enumerate(plan.concepts):
        for pi, p in enumerate(plan.prompts):
            s = score_batch(plan.lm.model, plan.judge, refs, ci, pi, c.description, p, [plain[pi]])[0]
            out.append(
                _record(plan, s, layer=-1, arm="unsteered", concept=c.name, prompt_idx=pi, strength="0")
            )
            if not plan.cfg.prompting:
                continue
            text = PROMPTING_TEMPLATE.format(prompt=p, description=c.description)
            cont = _generate(plan, encode_prompt(plan.lm.tokenizer, text, plan.gen.chat), 1)
            s = score_batch(plan.lm.model, plan.judge, refs, ci, pi, c.description, p, cont)[0]
            out.append(
                _record(plan, s, layer=-1, arm="prompting", concept=c.name, prompt_idx=pi, strength="prompt")
            )
    return out


def _concept_arms(plan: Plan, sae, hp: str, cal, ci: int, acts: list[torch.Tensor]):
    """Evidence and bound arms for concept `ci` (arms whose selection failed are skipped)."""
    from saekit.steer.concept.arms import make_arm, parse_arm
    from saekit.steer.concept.evidence import gather_evidence

    train_ids = [ids for ids, s in zip(plan.prompt_ids, plan.splits) if s == "train"]
    others = [t for k, c in enumerate(plan.concepts) if k != ci for t in c.texts]
    neg = torch.cat([a for k, a in enumerate(acts) if k != ci])
    sel_needed = sorted({parse_arm(a)[0] for a in plan.cfg.arms} - {"diffmean"})
    if "sae_ts" in sel_needed and "output" not in sel_needed:
        sel_needed.append("output")
    ev = gather_evidence(plan.lm.model, plan.lm.tokenizer, sae, hp, plan.concepts[ci].texts, others,
                         train_ids, cfg=plan.cfg.selection, cal=cal, methods=sel_needed,
                         acts_pos=acts[ci], acts_neg=neg, supervision=lambda: _supervision(plan, ci),
                         description=f"{plan.concepts[ci].name} {plan.concepts[ci].description}")  # fmt: skip
    arms = []
    for name in plan.cfg.arms:
        sel = parse_arm(name)[0]
        if sel == "diffmean" or sel in ev.selections:
            arms.append(make_arm(name, ev.selections.get(sel), ev.diffmean))
    return ev, arms


def _supervision(plan: Plan, ci: int):
    """Train-prompt continuations for the supervised and token-confidence selections of concept `ci`
    (`saekit.steer.concept.learned.build_supervision`; test prompts are never used)."""
    from saekit.steer.concept.learned import build_supervision

    train = [p for p, s in zip(plan.prompts, plan.splits) if s == "train"]
    return build_supervision(plan.lm.model, plan.lm.tokenizer, train, plan.concepts[ci].description,
                             chat=plan.gen.chat, max_new_tokens=plan.cfg.max_new_tokens,
                             seed=plan.cfg.seed)  # fmt: skip


def _arm_block(plan: Plan, arm, sae, cal, folder: str):
    """(n_rows, edit, absolute strengths per row) for one arm over the strength grid."""
    from saekit.steer.concept.arms import arm_edit, arm_strengths

    abs_rows = [arm_strengths(arm, s, sae, cal, folder) for s in plan.strengths]
    s_SN = torch.tensor(abs_rows, dtype=torch.float32, device=sae.device)
    return len(abs_rows), arm_edit(arm, sae, s_SN, plan.cfg.keep_error), abs_rows


def _layer_records(plan: Plan, folder: str, sae, refs, bar):
    """Every arm × strength × prompt for every concept at one SAE's layer; yields (records, info) per
    concept so the caller can save partial results of a long run."""
    from saekit.steer.concept.arms import batched_edit
    from saekit.steer.concept.diffmean import text_activations
    from saekit.steer.concept.judging import score_batch
    from saekit.steer.session import hook_point_of, layer_of

    hp = hook_point_of(sae)
    layer = layer_of(sae, hp)
    cal = _ensure_calibration(sae, folder, plan)
    model, tok = plan.lm.model, plan.lm.tokenizer
    acts = [text_activations(model, tok, hp, c.texts) for c in plan.concepts]
    for ci, c in enumerate(plan.concepts):
        records = []
        ev, arms = _concept_arms(plan, sae, hp, cal, ci, acts)
        info = _concept_info(layer, hp, folder, c, ev, arms)
        blocks = [_arm_block(plan, a, sae, cal, folder) for a in arms]
        edit = batched_edit([(n, fn) for n, fn, _ in blocks])
        n_rows = sum(n for n, _, _ in blocks)
        for pi, p in enumerate(plan.prompts):
            conts = _generate(plan, plan.prompt_ids[pi], n_rows, edit, hp)
            scored = iter(score_batch(model, plan.judge, refs, ci, pi, c.description, p, conts))
            for arm, (_, _, abs_rows) in zip(arms, blocks):
                for st, ab in zip(plan.strengths, abs_rows):
                    records.append(_record(plan, next(scored), layer=layer, arm=arm.name, concept=c.name,
                                           prompt_idx=pi, strength=str(st), strength_abs=ab,
                                           features=list(arm.features)))  # fmt: skip
            bar.update(1)
        yield records, info


def _concept_info(layer, hp, folder, concept, ev, arms) -> dict:
    return {
        "layer": layer,
        "hook_point": hp,
        "sae": folder,
        "concept": concept.name,
        "description": concept.description,
        "arms": {a.name: {"features": list(a.features), "weights": list(a.weights)} for a in arms},
        "selections": {k: {"features": list(s.features), "scores": {str(j): v for j, v in s.scores.items()}}
                       for k, s in ev.selections.items()},
        "selection_errors": ev.errors,
        "n_flagged": int(ev.flagged.sum()),
        "concept_tokens": ev.concept_tokens,
        "diffmean_norm": float(ev.diffmean.norm()),
        "fits": ev.fit_info,
    }  # fmt: skip


def _ensure_calibration(sae, folder, plan: Plan):
    from saekit.steer.calibration import ensure_calibration, load_calibration
    from saekit.steer.session import hook_point_of

    if all(s.unit == "abs" for s in plan.strengths):
        return load_calibration(folder, d_sae=sae.d_sae)
    cfg = plan.cfg
    return ensure_calibration(sae, folder, plan.lm, hook_point_of(sae), corpus=cfg.calib_corpus,
                              tokens=cfg.calib_tokens, quiet=cfg.quiet, who="saekit sweep")  # fmt: skip


@torch.no_grad()
def run_sweep(cfg: SweepConfig, *, lm=None, judge=None) -> SweepResult:
    """Run the whole protocol (library entry point of `saekit sweep`)."""
    from tqdm import tqdm

    from saekit.steer.concept.judging import build_references
    from saekit.sweep.protocol import protocol_table
    from saekit.sweep.report import summarize

    t0 = time.perf_counter()
    cfg = cfg.resolved()
    plan = _plan(cfg, lm, judge)
    plain = [_generate(plan, ids, 1)[0] for ids in plan.prompt_ids]
    refs = build_references(plan.lm.model, plan.judge, plain, plan.prompts, plan.concepts)
    result = SweepResult(config=config_dict(cfg), concepts=[])
    result.records = _baseline_records(plan, plain, refs)
    total = len(plan.saes) * len(plan.concepts) * len(plan.prompts)
    with tqdm(total=total, disable=cfg.quiet, desc="sweep", unit="batch") as bar:
        for folder, sae in plan.saes:
            for recs, info in _layer_records(plan, folder, sae, refs, bar):
                result.records += recs
                result.concepts.append(info)
                save_partial(result, cfg, t0)
    result.protocol = protocol_table(result.records, seed=cfg.seed)
    result.summary = summarize(result.records)
    result.seconds = time.perf_counter() - t0
    return result


def sweep_and_save(cfg: SweepConfig) -> tuple[SweepResult, dict[str, Path]]:
    """`saekit sweep` end to end: torch's CPU threads as `cfg.threads`, the whole protocol, then
    sweep.json, table.md and the PNGs in `cfg.out` (`saekit.sweep.report.save_result`)."""
    from saekit.sweep.report import save_result

    torch.set_num_threads(cfg.threads)
    result = run_sweep(cfg)
    return result, save_result(result, cfg.out)
