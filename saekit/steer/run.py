"""The library entry of `saekit steer` on a language model: `SteerConfig` (also the flags) and `run`.

`run` continues a prompt with and without steering and returns the side-by-side text; with
`--concept` the features and strength come from `saekit.steer.concept` (recipes, evidence, ladder),
with `--explain-prompt` / `--explain-concept` it lists candidate features instead. Image generators
take `saekit.steer.image` instead; `commands/steer.py` only picks the path, parses and prints.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Literal

import torch

from saekit.errors import SteeringError
from saekit.steer.methods import MethodName  # the registry's names: the one list


@dataclass(frozen=True)
class SteerConfig:
    """Steer generation with SAE features (`--feature 123 --method clamp --strength 4max --prompt ...`)."""

    sae: str
    """SAE folder (with scales.json from `saekit scale` for norm/max strengths)."""
    prompt: str | None = None
    """Prompt to continue."""
    feature: tuple[int, ...] = ()
    """Feature id(s) to steer; several are steered together."""
    method: MethodName = "clamp"
    """Steering method (see saekit.steer.methods)."""
    strength: str = "4max"
    """Strength with unit: `12` (abs), `0.5norm`, `4max`; one value, or one per feature comma-separated."""
    positions: Literal["all", "prompt", "generated"] = "all"
    """Which token positions to edit."""
    keep_error: bool = False
    """boost_active only: keep the SAE error term."""
    max_new_tokens: int = 40
    """Tokens to generate."""
    sample: bool = False
    """Sample (temperature/top-p) instead of greedy; both runs use the same seed."""
    temperature: float = 0.8
    """Sampling temperature."""
    seed: int = 0
    """Sampling seed (identical for the steered and unsteered runs)."""
    chat: bool = True
    """Wrap the prompt in the model's chat template (when it has one)."""
    concept: str | None = None
    """Instead of --feature: steer toward this concept (words, e.g. "the sea"); features and strength
    come from the best selection method of --sweep's result, else saekit.steer.concept.steering's default."""
    explain_concept: str | None = None
    """Instead of steering: list candidate features for this concept with input and output scores."""
    sweep: str | None = None
    """sweep.json from `saekit sweep` whose best SAE arm and strength --concept uses."""
    concept_arm: str | None = None
    """Override the recipe's arm for --concept (e.g. decompose:additive, output:clamp, diffmean)."""
    concept_strength: str | None = None
    """Override the recipe's strength for --concept (e.g. 0.25norm)."""
    recipe: str | None = None
    """A learned recipe (JSON from --learn-recipe): add its vector, (feature, weight) pairs, to --prompt."""
    learn_recipe: str | None = None
    """With --concept: fit a supervised sparse vector (k SAE features, LM loss on the concept's prompted
    continuations of the protocol's train prompts; saekit.steer.concept.learned), save it here as a recipe
    and steer --prompt with it."""
    learn_arm: Literal["sparse", "free"] = "sparse"
    """What --learn-recipe fits: `sparse` (SAE features) or `free` (an unconstrained vector, the baseline)."""
    verify: bool = True
    """With --concept: judge the steered text offline and, while the judges do not see the concept,
    escalate the strength (2x), then the arm (DiffMean written in 4, then 16 SAE features, then DiffMean
    itself), printing which arm carried it and its features, or saying that no SAE arm did.
    --no-verify: one generation at the recipe's strength, no judge (faster)."""
    concept_texts: Literal["templates", "generated", "both"] = "both"
    """With --concept and words no bundled concept matches: the texts that stand for the concept
    (features, DiffMean, the judge's anchor): the words in fixed `templates`, the model's own
    `generated` texts about them (8 sampled answers, a few seconds), or `both` (the default: it
    carried more protocol concepts than templates alone; saekit.steer.concept.steering.concept_texts)."""
    explain_prompt: str | None = None
    """Instead of steering: list the features most active on this prompt with their top tokens."""
    top_n: int = 10
    """How many features --explain-prompt lists."""
    analysis: str | None = None
    """analysis.json (or its folder) from `saekit analyze real`; default: <sae>/analysis.json if present."""
    model: str | None = None
    """Model (default: the SAE's provenance, else smollm2)."""
    hook_point: str | None = None
    """Override the SAE's hook point."""
    dtype: str = "auto"
    """Model dtype: auto (bfloat16 where the CPU has native bf16, else float32), bfloat16, float32."""
    device: str = "auto"
    """Device for the model and the SAE: auto | cpu | cuda | cuda:N."""
    width: int = 100
    """Total width of the side-by-side output."""


def side_by_side(left_title: str, left: str, right_title: str, right: str, width: int = 100) -> str:
    """Two wrapped columns."""
    col = max(20, (width - 3) // 2)
    a = [left_title, "-" * min(col, len(left_title))] + textwrap.wrap(left or "(empty)", col)
    b = [right_title, "-" * min(col, len(right_title))] + textwrap.wrap(right or "(empty)", col)
    n = max(len(a), len(b))
    a += [""] * (n - len(a))
    b += [""] * (n - len(b))
    return "\n".join(f"{x.ljust(col)} | {y}" for x, y in zip(a, b))


def _gen(cfg: SteerConfig):
    from saekit.steer.generate import GenerationConfig

    return GenerationConfig(
        max_new_tokens=cfg.max_new_tokens,
        greedy=not cfg.sample,
        temperature=cfg.temperature,
        seed=cfg.seed,
        chat=None if cfg.chat else False,
    )


def _explain_prompt(cfg: SteerConfig, s) -> str:
    from saekit.formats import output_folder
    from saekit.steer.concept.explain import explain_prompt, format_explanations, load_example_tokens
    from saekit.steer.generate import encode_prompt

    ids = encode_prompt(s.lm.tokenizer, cfg.explain_prompt, chat=False)
    examples = load_example_tokens(cfg.analysis or output_folder(cfg.sae) / "analysis.json")
    items = explain_prompt(
        s.lm.model, s.lm.tokenizer, s.sae, s.hook_point, ids, top_n=cfg.top_n, example_tokens=examples
    )
    return f"features most active on the prompt at {s.hook_point}:\n" + format_explanations(items)


def _steer_concept(cfg: SteerConfig, s) -> str:
    from saekit.steer.concept.recipes import Recipe, recipe_from_sweep
    from saekit.steer.concept.steering import DEFAULT_RECIPE, steer_concept

    if cfg.prompt is None:
        raise SteeringError("--concept needs --prompt (the text to continue)")
    recipe = recipe_from_sweep(cfg.sweep) if cfg.sweep else DEFAULT_RECIPE
    if cfg.concept_arm or cfg.concept_strength:
        recipe = Recipe(cfg.concept_arm or recipe.arm, cfg.concept_strength or recipe.strength, "flags")
    judge = None
    if cfg.verify:
        from saekit.steer.concept.judges import MiniLMJudge

        judge = MiniLMJudge()
    res = steer_concept(s, cfg.concept, cfg.prompt, _gen(cfg), recipe=recipe, judge=judge,
                        source=cfg.concept_texts)  # fmt: skip
    desc = ", ".join(f"f{j}" for j in res.arm.features) or "a vector"
    head = (
        f"prompt: {cfg.prompt!r}\nconcept {res.concept.name!r}: {res.recipe.arm} {res.recipe.strength} "
        f"(recipe: {res.recipe.source}); kept {res.arm.name} on {desc} at {s.hook_point}; "
        f"{int(res.evidence.flagged.sum())} outlier/dense features flagged and never chosen\n"
    )
    if res.tries:
        steps = [f"{t.scores['arm']} {t.factor:g}x: concept {t.scores['concept_score']:.2f} "
                 f"fluency {t.scores['fluency']:.2f}" for t in res.tries]  # fmt: skip
        head += "tries on this prompt (kept: the first the judges see, else the best): "
        head += " | ".join(steps) + "\n"
    text = head + side_by_side(
        "unsteered",
        res.pair.unsteered.text,
        f"steered toward {cfg.concept!r}",
        res.pair.steered.text,
        cfg.width,
    )
    if cfg.verify:
        from saekit.steer.concept.judging import format_scores, judge_pair

        plain, steered = res.scores or judge_pair(s.lm.model, judge, res.concept, cfg.prompt, res.pair)
        text += "\n\n" + format_scores(plain, steered) + "\n" + _verdict(res, steered, cfg.concept)
    if res.arm.features:
        text += "\n" + _feature_lines(s, res.arm)
    return text


def _feature_lines(s, arm, n_tokens: int = 6) -> str:
    """The kept arm's SAE features: relative weight and the tokens each decoder direction promotes."""
    from saekit.steer.concept.explain import logit_effect_tokens

    feats = list(arm.features)
    toks = logit_effect_tokens(s.lm.model, s.lm.tokenizer, s.sae.decoder_directions()[feats], n_tokens)
    weights = list(arm.weights) or [1.0] * len(feats)
    lines = [f"features of {arm.name} (weight in the push, tokens its decoder direction promotes):"]
    for j, w, ts in zip(feats, weights, toks):
        lines.append(f"  f{j:<6} {w:6.3f}  " + " ".join(repr(t) for t in ts))
    return "\n".join(lines)


def _verdict(res, steered_scores: dict, concept: str) -> str:
    """One plain line: did an SAE arm carry the concept (the ladder's rule, `ladder.visible`), only
    DiffMean, or nothing the judges saw."""
    from saekit.steer.concept.arms import is_sae_arm
    from saekit.steer.concept.ladder import MIN_CONCEPT, visible

    seen = visible(steered_scores)
    desc = ", ".join(f"f{j}" for j in res.arm.features)
    if is_sae_arm(res.arm.name) and seen:
        return f"verdict: the SAE arm {res.arm.name} carried {concept!r} (features {desc})"
    if seen:
        base = "DiffMean" if res.arm.name == "diffmean" else res.arm.name
        return (f"verdict: no SAE arm carried {concept!r} at the strengths tried; {base} (a non-SAE "
                "baseline) did")  # fmt: skip
    return (f"verdict: the judges did not see {concept!r} (concept score >= {MIN_CONCEPT:g} and fluent) "
            "in any try (SAE arms, then DiffMean)")  # fmt: skip


def _learn_recipe(cfg: SteerConfig, s):
    """Fit and save the --learn-recipe for --concept (train prompts of the bundled protocol)."""
    from saekit.steer.concept.concepts import load_prompts
    from saekit.steer.concept.learned import learn_recipe, save_recipe
    from saekit.steer.concept.steering import concept_texts

    concept, _ = concept_texts(cfg.concept)
    train, _ = load_prompts("protocol")
    recipe = learn_recipe(s, concept, train, arm=cfg.learn_arm, chat=_gen(cfg).chat)
    save_recipe(recipe, cfg.learn_recipe)
    return recipe


def _steer_recipe(cfg: SteerConfig, s, recipe=None) -> str:
    """Steer --prompt with a learned recipe's vector (added on every position)."""
    from saekit.steer.apply import steering
    from saekit.steer.concept.learned import load_recipe
    from saekit.steer.generate import generate_pair

    if cfg.prompt is None:
        raise SteeringError("--recipe / --learn-recipe need --prompt (the text to continue)")
    recipe = recipe or load_recipe(cfg.recipe)
    if recipe.hook_point != s.hook_point:
        raise SteeringError(f"the recipe was fitted at {recipe.hook_point}, the SAE steers {s.hook_point}")
    v = recipe.direction(s.sae).to(s.sae.device)
    pair = generate_pair(
        s.lm.model, s.lm.tokenizer, cfg.prompt,
        lambda: steering(s.lm.model, s.hook_point, lambda x: x + v.to(x.dtype), positions=cfg.positions,
                         prompt_len=None if cfg.positions == "all" else 0),
        _gen(cfg),
    )  # fmt: skip
    head = (f"prompt: {cfg.prompt!r}\nrecipe {recipe.arm} for {recipe.concept!r} at {s.hook_point}: "
            f"{recipe.describe()} (vector norm {float(v.norm()):.3g})\n")  # fmt: skip
    return head + side_by_side("unsteered", pair.unsteered.text, f"steered ({recipe.concept})",
                               pair.steered.text, cfg.width)  # fmt: skip


def _feature_strengths(cfg: SteerConfig, s) -> list[float]:
    from saekit.steer.strength import method_strengths

    return method_strengths(cfg.strength, cfg.method, s.sae, cfg.feature, s.calibration, s.sae_folder)


def _steer_features(cfg: SteerConfig, s) -> str:
    from saekit.steer.apply import steer_sae
    from saekit.steer.generate import generate_pair
    from saekit.steer.methods import METHOD_SPACE

    features, abs_s = list(cfg.feature), _feature_strengths(cfg, s)
    pair = generate_pair(
        s.lm.model,
        s.lm.tokenizer,
        cfg.prompt,
        lambda: steer_sae(
            s.lm.model,
            s.sae,
            cfg.method,
            features,
            abs_s,
            hook_point=s.hook_point,
            positions=cfg.positions,
            keep_error=cfg.keep_error,
        ),
        _gen(cfg),
    )
    desc = ", ".join(f"f{j}={v:.3g}" for j, v in zip(features, abs_s))
    head = (
        f"prompt: {cfg.prompt!r}\nhook {s.hook_point}; {cfg.method} {cfg.strength} -> {desc} "
        f"({METHOD_SPACE[cfg.method]} units); positions={cfg.positions}; "
        f"{'sampled, seed ' + str(cfg.seed) if cfg.sample else 'greedy'}\n"
    )
    return head + side_by_side(
        "unsteered",
        pair.unsteered.text,
        f"steered ({cfg.method} {cfg.strength})",
        pair.steered.text,
        cfg.width,
    )


def _session(cfg: SteerConfig, lm):
    """The steering session (a single-file SAE's scales come from its output folder)."""
    from saekit.steer.session import open_session

    s = open_session(
        cfg.sae, model=cfg.model, dtype=cfg.dtype, hook_point=cfg.hook_point, lm=lm, device=cfg.device
    )
    needs = cfg.concept is not None or any(u in str(cfg.strength) for u in ("norm", "max"))
    if s.calibration is None and needs and cfg.explain_prompt is None and cfg.explain_concept is None:
        from saekit.formats import output_folder
        from saekit.steer.calibration import ensure_calibration

        folder = output_folder(cfg.sae)
        s.calibration = ensure_calibration(s.sae, folder, s.lm, s.hook_point, who="saekit steer")
        s.sae_folder = str(folder)
    return s


@torch.no_grad()
def run(cfg: SteerConfig, lm=None) -> str:
    """Do what the flags say and return the text to print (the library entry of the command).

    `lm` (a LoadedModel) is used instead of loading the model."""
    from saekit.steer.concept.steering import explain_concept

    s = _session(cfg, lm)
    if cfg.explain_prompt is not None:
        return _explain_prompt(cfg, s)
    if cfg.explain_concept is not None:
        return explain_concept(s, cfg.explain_concept, chat=_gen(cfg).chat, top_n=cfg.top_n)
    if cfg.recipe is not None:
        return _steer_recipe(cfg, s)
    if cfg.concept is not None and cfg.learn_recipe is not None:
        return _steer_recipe(cfg, s, _learn_recipe(cfg, s))
    if cfg.concept is not None:
        return _steer_concept(cfg, s)
    if cfg.prompt is None or not cfg.feature:
        raise SteeringError(
            "give --prompt and --feature, or --prompt and --concept WORDS "
            "(--explain-prompt / --explain-concept list candidate features)"
        )
    return _steer_features(cfg, s)
