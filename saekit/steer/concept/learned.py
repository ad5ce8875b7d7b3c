"""Supervised steering on a language model: the data, the LM loss, the fits as selections, and the
saved recipe that `saekit steer --recipe` applies.

Data (`Supervision`): for each *train* prompt, the model's own continuation when the concept is named
in the instruction (`CONCEPT_INSTRUCTION`, the prompting baseline's template): the greedy one is the
fit's target, a sampled one the validation target (k is chosen on it). The targets follow
the *plain* prompt, so the vector learns to make the unprompted model say what the prompted one says.
The judges never see these texts (they are generated here, from train prompts only), and the concept's
reference sentences are not used. The plain prompts' own greedy continuations are kept too: the
token-confidence selection (`saekit.steer.concept.confidence`) reads concept-token probabilities on them.

Loss: mean cross-entropy of the target tokens with `v` added at the hook point on every position
(the sweep's default `positions=all`), through `saekit.steer.apply.steering`. Prompts are left-padded
and targets right-padded, so the logits are only computed for the target positions.
The math of the fits is `saekit.steer.concept.supervised`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.models.frozen import frozen
from saekit.steer.concept.select import Selection
from saekit.steer.concept.supervised import (
    FitConfig,
    candidates_by_gradient,
    fit_free,
    fit_sparse,
    loss_gradient,
)

CONCEPT_INSTRUCTION = "{prompt} In your answer, talk about {description}."
"""An instruction naming the concept (the prompting baseline's template, `saekit.sweep.config`)."""
RECIPE_FORMAT = "saekit.steer_recipe"
RECIPE_SCHEMA = 1


@dataclass
class Supervision:
    """Token sequences for fitting and reading steering vectors for one concept."""

    train: list[tuple[Tensor, Tensor]]
    """(prompt ids `[P]`, target ids `[T]`) pairs the vector is fitted on."""
    val: list[tuple[Tensor, Tensor]]
    """Pairs that choose k (other samples, same train prompts)."""
    neutral: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    """(prompt ids, the unsteered model's own continuation) for token-confidence scores."""


@torch.no_grad()
def build_supervision(
    model, tokenizer, prompts: Sequence[str], description: str, *, chat: bool | None = None,
    max_new_tokens: int = 24, seed: int = 0,
) -> Supervision:  # fmt: skip
    """Prompted continuations of `prompts` (greedy: train, sampled: validation) and their plain ones."""
    from saekit.steer.generate import GenerationConfig, decode_rows, encode_prompt, generate_ids

    if not prompts:
        raise SteeringError("supervised steering needs at least one train prompt")
    eos = getattr(tokenizer, "eos_token_id", None)
    greedy = GenerationConfig(max_new_tokens=max_new_tokens, greedy=True, chat=chat)
    sampled = GenerationConfig(max_new_tokens=max_new_tokens, greedy=False, seed=seed, chat=chat)
    sup = Supervision([], [])
    for p in prompts:
        plain = encode_prompt(tokenizer, p, chat)
        asked = encode_prompt(tokenizer, CONCEPT_INSTRUCTION.format(prompt=p, description=description), chat)
        g = decode_rows(tokenizer, generate_ids(model, asked, greedy, eos), eos)[0]
        s = decode_rows(tokenizer, generate_ids(model, asked, sampled, eos), eos)[0]
        n = decode_rows(tokenizer, generate_ids(model, plain, greedy, eos), eos)[0]
        for cont, into in ((g, sup.train), (s, sup.val), (n, sup.neutral)):
            if cont.token_ids.numel():
                into.append((plain[0], cont.token_ids.cpu()))
    if not sup.train or not sup.val:
        raise SteeringError("the model produced no continuation to fit a steering vector on")
    return sup


def pack(pairs: Sequence[tuple[Tensor, Tensor]], pad_id: int = 0) -> dict[str, Tensor]:
    """Left-padded prompts + right-padded targets: `input_ids`, `attention_mask`, `position_ids`
    `[B, S]` and `labels [B, T]` (−100 on padding) for the last `T` + 1 logits."""
    if not pairs:
        raise SteeringError("no (prompt, target) pairs to pack")
    P = max(int(p.numel()) for p, _ in pairs)
    T = max(int(t.numel()) for _, t in pairs)
    B = len(pairs)
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    mask = torch.zeros(B, P + T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b, (p, t) in enumerate(pairs):
        ids[b, P - p.numel() : P] = p
        ids[b, P : P + t.numel()] = t
        mask[b, P - p.numel() : P + t.numel()] = 1
        labels[b, : t.numel()] = t
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "labels": labels}


def lm_loss_fn(model, hook_point: str, pairs: Sequence[tuple[Tensor, Tensor]], pad_id: int = 0):
    """`v [d] -> mean CE of the targets` with `v` added at `hook_point` on every position."""
    from saekit.steer.apply import steering

    batch = pack(pairs, pad_id)
    dev = next(model.parameters()).device
    labels = batch.pop("labels").to(dev)
    inputs = {k: t.to(dev) for k, t in batch.items()}
    T = labels.shape[1]

    def loss(v_D: Tensor) -> Tensor:
        vd = v_D.to(dev)
        with steering(model, hook_point, lambda x: x + vd.to(x.dtype), compute_dtype=torch.float32):
            logits = model(**inputs, logits_to_keep=T + 1).logits[:, :T].float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))

    return loss


@dataclass
class SupervisedFits:
    """The sparse fit and its free twin for one concept, as selections."""

    sparse: Selection | None
    free: Selection | None
    info: dict = field(default_factory=dict)
    """Losses, chosen k, fitted norms (in units of the activation norm)."""


def fit_concept(
    model, sae, hook_point: str, sup: Supervision, *, scale: float, cfg: FitConfig | None = None,
    flagged: Tensor | None = None, which: Sequence[str] = ("sparse", "free"), pad_id: int = 0,
) -> SupervisedFits:  # fmt: skip
    """Fit the sparse vector (candidates: the features whose decoder directions lower the train loss
    fastest at v = 0, flagged ones excluded) and/or the free one on `sup`."""
    cfg = cfg or FitConfig()
    d = sae.d_in
    out = SupervisedFits(None, None, {"scale": scale})
    with frozen(model):
        train = lm_loss_fn(model, hook_point, sup.train, pad_id)
        val = lm_loss_fn(model, hook_point, sup.val, pad_id)
        if "sparse" in which:
            D = sae.decoder_directions().detach().float()
            grad = loss_gradient(train, torch.zeros(d))
            cands = candidates_by_gradient(grad, D, cfg.n_candidates, flagged)
            fit = fit_sparse(train, D, cands, scale=scale, cfg=cfg, val_loss_fn=val)
            norm = float(fit.vector.norm())
            out.sparse = Selection("sparse", fit.features, tuple(w / norm for w in fit.weights),
                                   {j: w for j, w in zip(fit.features, fit.weights)},
                                   fit.vector / norm)  # fmt: skip
            out.info["sparse"] = {"k": fit.k, "norm": norm / scale, "base_loss": list(fit.base_loss),
                                  "losses": {str(k): list(v) for k, v in fit.losses.items()},
                                  "candidates": cands,
                                  "l1_ranking": {str(j): c for j, c in fit.l1_coefficients.items()},
                                  }  # fmt: skip
        if "free" in which:
            free = fit_free(train, d, scale=scale, cfg=cfg, val_loss_fn=val)
            norm = float(free.vector.norm())
            if norm == 0:
                raise SteeringError("the free steering vector stayed at zero")
            out.free = Selection("free", (), (), {}, free.vector / norm)
            out.info["free"] = {"norm": norm / scale, "loss": list(free.loss), "step": free.step,
                                "base_loss": list(free.base_loss)}  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class LearnedRecipe:
    """A fitted steering vector for one concept at one hook point: `Σ weight_j · d_j` (unit decoder
    directions, activation units), or a free vector when `features` is empty."""

    concept: str
    """Concept name."""
    description: str
    """What the vector was fitted to make the model talk about."""
    hook_point: str
    """Where the vector is added."""
    arm: str
    """`sparse:additive` or `free`."""
    features: tuple[int, ...]
    """SAE features (empty for a free vector)."""
    weights: tuple[float, ...]
    """Activation-unit weight of each feature (sum of `w_j d_j` is the vector added)."""
    vector: tuple[float, ...] = ()
    """The free vector itself (activation units); empty for a sparse recipe."""
    sae: str = ""
    """SAE folder the features index into."""
    info: dict = field(default_factory=dict)
    """How it was fitted (losses, k, prompts)."""

    def direction(self, sae=None) -> Tensor:
        """`[d]` the vector to add, in activation units."""
        if not self.features:
            return torch.tensor(self.vector, dtype=torch.float32)
        if sae is None:
            raise SteeringError(f"recipe {self.concept!r} is sparse: its features need the SAE ({self.sae})")
        if max(self.features) >= sae.d_sae:
            raise SteeringError(
                f"recipe features {self.features} out of range for an SAE of d_sae={sae.d_sae}"
            )
        D = sae.decoder_directions().detach().float().cpu()[list(self.features)]
        return torch.tensor(self.weights, dtype=torch.float32) @ D

    def describe(self) -> str:
        """`(feature, weight)` pairs, or the free vector's norm."""
        if not self.features:
            return f"a free vector of norm {torch.tensor(self.vector).norm():.3g}"
        return ", ".join(f"(f{j}, {w:.3g})" for j, w in zip(self.features, self.weights))


def save_recipe(recipe: LearnedRecipe, path: str | Path) -> Path:
    """Write the recipe as JSON (atomic)."""
    from dataclasses import asdict

    from saekit.atomic import write_json_atomic

    path = Path(path)
    doc = {"schema_version": RECIPE_SCHEMA, "format": RECIPE_FORMAT, **asdict(recipe)}
    write_json_atomic(path, doc)
    return path


def load_recipe(path: str | Path) -> LearnedRecipe:
    """Read a recipe written by `save_recipe` (a SteeringError naming the file otherwise)."""
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != RECIPE_FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {RECIPE_FORMAT!r}")
        if int(doc.get("schema_version", 0)) > RECIPE_SCHEMA:
            raise ValueError(f"schema_version {doc['schema_version']} is newer than {RECIPE_SCHEMA}")
        rec = LearnedRecipe(
            doc["concept"], doc["description"], doc["hook_point"], doc["arm"],
            tuple(int(j) for j in doc["features"]), tuple(float(w) for w in doc["weights"]),
            tuple(float(x) for x in doc.get("vector", ())), doc.get("sae", ""), doc.get("info", {}),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SteeringError(f"{path}: not a saekit steering recipe ({exc}); make one with "
                            "`saekit steer --concept WORDS --learn-recipe FILE`") from exc  # fmt: skip
    if len(rec.features) != len(rec.weights):
        raise SteeringError(f"{path}: {len(rec.features)} features but {len(rec.weights)} weights")
    return rec


def recipe_from_fit(concept, hook_point: str, sel: Selection, norm: float, sae_folder: str = "",
                    info: dict | None = None) -> LearnedRecipe:  # fmt: skip
    """A recipe from a fitted selection steered at absolute length `norm`."""
    if sel.features:
        return LearnedRecipe(concept.name, concept.description, hook_point, "sparse:additive", sel.features,
                             tuple(w * norm for w in sel.weights), (), sae_folder, info or {})  # fmt: skip
    vec = tuple((sel.direction.float() * norm).tolist())
    return LearnedRecipe(concept.name, concept.description, hook_point, "free", (), (), vec, sae_folder,
                         info or {})  # fmt: skip


def learn_recipe(session, concept, prompts: Sequence[str], *, arm: str = "sparse", chat: bool | None = None,
                 cfg: FitConfig | None = None, max_new_tokens: int = 24) -> LearnedRecipe:  # fmt: skip
    """Fit `arm` (`sparse` or `free`) for `concept` on `prompts` (train prompts) with the session's
    model and SAE; the recipe's vector is the fit itself (its fitted length)."""
    from saekit.steer.concept.diffmean import text_activations
    from saekit.steer.concept.select import flag_outliers

    lm = session.lm
    scale = float(session.calibration.mean_norm) if session.calibration is not None else None
    flagged = None
    if concept.texts:
        acts = text_activations(lm.model, lm.tokenizer, session.hook_point, concept.texts)
        scale = scale or float(acts.norm(dim=-1).mean())
        cal_max = None if session.calibration is None else session.calibration.max_active
        flagged = flag_outliers(session.sae, acts, calibration_max=cal_max)
    if scale is None:
        raise SteeringError("no activation scale: run `saekit scale` on the SAE or give concept texts")
    sup = build_supervision(lm.model, lm.tokenizer, prompts, concept.description, chat=chat,
                            max_new_tokens=max_new_tokens)  # fmt: skip
    fits = fit_concept(lm.model, session.sae, session.hook_point, sup, scale=scale, cfg=cfg,
                       flagged=flagged, which=(arm,), pad_id=_pad_id(lm.tokenizer))  # fmt: skip
    sel = fits.sparse if arm == "sparse" else fits.free
    norm = fits.info[arm]["norm"] * scale
    info = {**fits.info[arm], "prompts": list(prompts), "scale": scale}
    return recipe_from_fit(concept, session.hook_point, sel, norm, session.sae_folder, info)


def _pad_id(tokenizer) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, name, None)
        if v is not None:
            return int(v)
    return 0
