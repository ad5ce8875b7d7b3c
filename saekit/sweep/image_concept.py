"""Which SAE feature, method, site, strength, step window and CFG branch steers a FLUX toward a concept?
The image sweep for any FluxPipeline (FLUX.1-schnell / -dev, or the testbed), judged by CLIP.

The factor sweep (`image_factors`) needs the testbed's factor judges. A FLUX.1 user has none, but has
prompts and a concept in words ("red", "in the style of a woodcut"). This sweep asks the seeds' question
of that user's model, with the same protocol:

1. prompts (a file, one per line) are shuffled once and split into selection, train and test; a prompt
   "asks for the concept" through `concept_template` (default "{prompt}, {concept}");
2. selection: the pipeline runs on the selection prompts with and without the concept; the SAE latents at
   the site rising most are the features, the raw mean shift is DiffMean (`image_factors.contrast_edits`);
3. arms: SAE methods x strengths x step windows x CFG branches, DiffMean x the same, and prompting (the
   prompt asks for the concept: the reference that needs no steering);
4. judge (`clip_judge.ClipJudge`, any local CLIP folder or hub id): success = the CLIP margin of the
   prompt asking for the concept over the prompt as asked is > 0 on the image; preserved = CLIP image
   similarity to the unsteered image of the same seed at least that of the prompting image of the same
   seed (the change that asking for the concept makes; or a fixed `keep_similarity`); faithful = both. SSIM is
   reported beside it;
5. each arm's configuration is chosen on the train prompts (faithful success; ties to the weaker push)
   and reported on the test prompts with bootstrap intervals, with the paired SAE - DiffMean difference.

On the testbed, where factor judges exist, this CLIP judge ranks configurations like them (Spearman
+0.85 concept, +0.93 preservation; docs/results/fluxbed_steering). Outputs: results.json, table.md,
contact.png (rows: unsteered, prompting, the chosen SAE arm, the chosen DiffMean; columns: test prompts).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from torch import Tensor

from saekit.errors import SteeringError


@dataclass(frozen=True)
class ConceptImageSweepConfig:
    """One concept sweep on a FluxPipeline, judged by CLIP (see the module docstring)."""

    model: str
    """A FluxPipeline folder or hub id (black-forest-labs/FLUX.1-schnell with the weights at hand)."""
    sae: str
    """An SAE at one site of that pipeline (in the loop, or on the pooled / T5 conditioning)."""
    concept: str
    """The concept in words, e.g. `red` or `a woodcut print`."""
    prompts: str
    """A text file, one prompt per line (blank lines and lines starting with # skipped)."""
    clip_judge: str
    """The CLIP judge: a local CLIP folder (config.json, weights, tokenizer, preprocessor) or a hub id."""
    out: str = "runs/image_concept_sweep"
    concept_template: str = "{prompt}, {concept}"
    """How a prompt asks for the concept (the prompting arm, the contrast, and the judge's caption), unless
    its line in the prompts file gives that version after a tab."""
    hook_point: str | None = None
    """In-loop site (default: the SAE's own, e.g. `transformer_blocks.3@image`)."""
    conditioning: Literal["none", "pooled", "text"] = "none"
    """`pooled`: steer the pooled CLIP vector; `text`: the T5 token embeddings (SAE trained there)."""
    methods: tuple[str, ...] = ("additive", "clamp")
    """SAE methods: additive, clamp, swap (the target's features set, the falling ones zeroed); spatial,
    spatial_clamp (token-dependent maps)."""
    strengths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    """Multiples of the measured shift (additive, DiffMean), or of the feature's mean with the concept
    (clamp)."""
    windows: tuple[str, ...] = ("all",)
    """Denoising-step windows (in-loop only): all, early, late, A:B."""
    branches: tuple[Literal["cond", "uncond", "both"], ...] = ("cond",)
    """True-CFG branches to edit (in-loop, with --true-cfg-scale > 1): cond, uncond, both."""
    n_features: int = 1
    n_falling: int = 4
    """`swap`: how many falling features (those of the prompts without the concept) it zeroes."""
    select: Literal["contrast", "zero-shot", "judged"] = "contrast"
    """contrast (latents rising with the concept), zero-shot (pooled site: decoder cosine to the concept's
    embedding) or judged (latents whose most active selection images CLIP reads as the concept)."""
    n_select: int = 8
    n_train: int = 8
    n_test: int = 8
    keep_similarity: float | None = None
    """CLIP image similarity to the unsteered image at which the rest of the image counts as kept; None
    (default): per seed, the similarity of the prompting image, i.e. a steered image may change the
    unsteered one as much as asking for the concept does, not more. A fixed bar depends on the CLIP and
    the concept (colour alone moves the testbed CLIP's similarity to ~0.4), the prompting one does not."""
    num_inference_steps: int = 4
    height: int = 512
    width: int = 512
    guidance_scale: float = 0.0
    true_cfg_scale: float = 1.0
    max_sequence_length: int = 256
    batch: int = 4
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    offload: Literal["none", "model", "sequential"] = "none"
    quiet: bool = False

    def __post_init__(self) -> None:
        from saekit.sweep.image_runner import step_window

        for w in self.windows:
            step_window(w, self.num_inference_steps)
        if "{prompt}" not in self.concept_template or "{concept}" not in self.concept_template:
            raise SteeringError(
                f"--concept-template {self.concept_template!r} must contain {{prompt}} and {{concept}}"
            )
        if not self.concept.strip():
            raise SteeringError("--concept is empty: name the concept in words")
        if self.conditioning != "none" and (
            tuple(self.windows) != ("all",) or tuple(self.branches) != ("cond",)
        ):
            raise SteeringError(
                "--windows and --branches apply to in-loop edits; drop them with --conditioning"
            )
        if any(b != "cond" for b in self.branches) and self.true_cfg_scale <= 1:
            raise SteeringError("--branches uncond/both need true CFG: set --true-cfg-scale > 1")
        if self.select == "zero-shot" and self.conditioning != "pooled":
            raise SteeringError(
                "--select zero-shot needs an SAE on the pooled CLIP vector (--conditioning pooled)"
            )
        if min(self.n_select, self.n_train, self.n_test) < 1:
            raise SteeringError("--n-select, --n-train and --n-test must each be >= 1")


def read_prompts(path: str) -> dict[str, str | None]:
    """Prompts from a text file, one per line; blank lines and `#` comments skipped. A line may hold two
    prompts separated by a tab: the prompt as asked, and the same prompt asking for the concept (when
    the concept replaces a word rather than being appended: "a yellow 5<TAB>a red 5"); else None, and
    `concept_template` makes the second one. Returns {prompt: its concept version or None}."""
    p = Path(path)
    if not p.is_file():
        raise SteeringError(f"prompts file {path!r} not found: give a text file with one prompt per line")
    out: dict[str, str | None] = {}
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip(" \r\n")  # not the tab: "prompt<TAB>" is an error, not a plain prompt
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        plain, tab, asking = line.partition("\t")
        plain, asking = plain.strip(), asking.strip()
        if tab and (not plain or not asking):
            raise SteeringError(
                f"{path}:{n}: a tab must separate two prompts (as asked, asking for the concept)"
            )
        out.setdefault(plain, asking or None)
    return out


def split_prompts(prompts: list[str], n_select: int, n_train: int, n_test: int, seed: int):
    """(selection, train, test): disjoint, from one seeded shuffle of the distinct prompts."""
    uniq = list(dict.fromkeys(prompts))
    need = n_select + n_train + n_test
    if len(uniq) < need:
        raise SteeringError(
            f"{len(uniq)} distinct prompts, {need} needed ({n_select} selection + {n_train} "
            f"train + {n_test} test): add prompts or lower --n-*"
        )
    random.Random(seed).shuffle(uniq)
    return uniq[:n_select], uniq[n_select : n_select + n_train], uniq[n_select + n_train : need]


def clip_outcomes(
    margin: np.ndarray, similarity: np.ndarray, keep: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Per image: success (margin > 0), kept (similarity >= keep, a number or one bar per image) and
    faithful (both)."""
    success, kept = margin > 0, similarity >= keep
    return {"success": success, "kept": kept, "faithful": success & kept}


def _configs(cfg: ConceptImageSweepConfig, spatial: bool) -> list[tuple]:
    """(arm, method, strength, window, branch) for the SAE and DiffMean (additive; spatial twin too)."""
    grid = [
        (m, s, w, b) for m in cfg.methods for s in cfg.strengths for w in cfg.windows for b in cfg.branches
    ]
    dm = ["additive"] + (["spatial"] if spatial else [])
    dm_grid = [(m, s, w, b) for m in dm for s in cfg.strengths for w in cfg.windows for b in cfg.branches]
    return [("sae", *c) for c in grid] + [("diffmean", *c) for c in dm_grid]


def _label(c: tuple) -> str:
    arm, m, s, w, b = c
    return f"{arm}:{m}:{s:g}:{w}:{b}"


def run_concept_sweep(cfg: ConceptImageSweepConfig, *, pipe=None, judge=None) -> dict:
    """Run the sweep (module docstring); writes results.json, table.md, contact.png into `cfg.out`.
    `pipe` / `judge`: an already loaded FluxPipeline / `ClipJudge` (reuse, tests)."""
    import saekit
    from saekit.device import resolve_device
    from saekit.steer.image.spatial import SPATIAL_METHODS
    from saekit.sweep.clip_judge import ClipJudge, ssim
    from saekit.sweep.image_factors import bootstrap_mean, contrast_edits, write_outputs
    from saekit.sweep.image_runner import Generation, PipelineRunner

    pairs = read_prompts(cfg.prompts)
    sel, train, test_p = split_prompts(list(pairs), cfg.n_select, cfg.n_train, cfg.n_test, cfg.seed)
    dev = resolve_device(cfg.device)
    if pipe is None:
        from saekit.models.load import load_diffusers

        pipe = load_diffusers(cfg.model, cfg.dtype, dev, cfg.offload)
    sae = saekit.load(cfg.sae, device=dev).eval()
    gen = Generation(
        cfg.num_inference_steps,
        cfg.height,
        cfg.width,
        cfg.guidance_scale,
        cfg.true_cfg_scale,
        cfg.max_sequence_length,
        cfg.batch,
        cfg.seed,
    )
    r = PipelineRunner(pipe, sae, gen, conditioning=cfg.conditioning, hook_point=cfg.hook_point)
    judge = judge or ClipJudge(cfg.clip_judge, device=str(dev))
    ask = lambda ps: [pairs[p] or cfg.concept_template.format(prompt=p, concept=cfg.concept) for p in ps]  # noqa: E731
    spatial = any(m in SPATIAL_METHODS for m in cfg.methods)
    judge_fn = lambda imgs, plain: judge.concept_margin(imgs, ask(plain), plain) > 0  # noqa: E731
    edit_for, feats, sp_feats = contrast_edits(r, cfg, sel, ask(sel), cfg.concept, judge_fn)
    configs = _configs(cfg, spatial)
    scores: dict[str, dict] = {"train": {}, "test": {}}
    chosen: dict[str, tuple] = {}
    sheet: list[tuple[str, str, Tensor]] = []
    grid_rows = []

    bar: dict[str, np.ndarray] = {}

    def judged(img: Tensor, base: Tensor, prompts: list[str], split: str) -> dict[str, np.ndarray]:
        margin = judge.concept_margin(img, ask(prompts), prompts)
        sim = judge.similarity(img, base)
        keep = cfg.keep_similarity if cfg.keep_similarity is not None else bar[split]
        out = clip_outcomes(margin, sim, keep)
        return {**out, "margin": margin, "similarity": sim, "ssim": ssim(img, base)}

    from tqdm import tqdm

    for split, prompts in (("train", train), ("test", test_p)):
        base = r.generate(prompts)
        ref = r.generate(ask(prompts))
        bar[split] = judge.similarity(ref, base) - 1e-6  # the prompting image's own similarity keeps
        scores[split]["prompting"] = judged(ref, base, prompts, split)
        scores[split]["unsteered"] = judged(base, base, prompts, split)
        if split == "test":
            sheet += [("unsteered", cfg.concept, base[:8]), ("prompting", cfg.concept, ref[:8])]
        todo = configs if split == "train" else list(dict.fromkeys(chosen.values()))
        for c in tqdm(todo, desc=f"{split} configurations", disable=cfg.quiet, leave=False):
            arm, method, s, w, b = c
            img = r.generate(prompts, edit_for(arm, method, s), window=w, branch=b)
            scores[split][c] = judged(img, base, prompts, split)
            if split == "test":
                sheet += [(a, cfg.concept, img[:8]) for a, ch in chosen.items() if ch == c]
            else:
                grid_rows.append(
                    {"config": _label(c), **{k: float(v.mean()) for k, v in scores[split][c].items()}}
                )
        if split == "train":  # most faithful successes; ties go to the weaker push
            for arm in ("sae", "diffmean"):
                cands = [c for c in configs if c[0] == arm]
                chosen[arm] = max(cands, key=lambda c: (scores["train"][c]["faithful"].mean(), -c[2]))
    test = {}
    for name, key in (
        ("sae", chosen["sae"]),
        ("diffmean", chosen["diffmean"]),
        ("prompting", "prompting"),
        ("unsteered", "unsteered"),
    ):
        o = scores["test"][key]
        test[name] = {
            "faithful_success": float(o["faithful"].mean()),
            "ci": bootstrap_mean(o["faithful"].astype(float)),
            "success": float(o["success"].mean()),
            "kept": float(o["kept"].mean()),
            "clip_similarity": float(o["similarity"].mean()),
            "ssim": float(o["ssim"].mean()),
            "margin": float(o["margin"].mean()),
            "n": len(o["faithful"]),
        }
    diff = scores["test"][chosen["sae"]]["faithful"].astype(float) - scores["test"][chosen["diffmean"]][
        "faithful"
    ].astype(float)
    test["sae_minus_diffmean"] = {"difference": float(diff.mean()), "ci": bootstrap_mean(diff)}
    result = {
        "config": asdict(cfg),
        "splits": {"selection": sel, "train": train, "test": test_p},
        "features": feats,
        **({"spatial_features": sp_feats} if sp_feats else {}),
        "chosen": {
            a: {"config": _label(c), "train": float(scores["train"][c]["faithful"].mean())}
            for a, c in chosen.items()
        },
        "train_grid": grid_rows,
        "test": test,
    }
    write_outputs(cfg.out, result, sheet, concept_table_markdown(result))
    return result


def concept_table_markdown(result: dict) -> str:
    """The test-split table of a concept sweep (markdown)."""
    cfg, t = result["config"], result["test"]
    site = {"pooled": "the pooled CLIP vector", "text": "the T5 token embeddings"}.get(
        cfg["conditioning"], cfg["hook_point"] or "the SAE's hook point"
    )
    lines = [
        f"# Steering {cfg['model']} toward {cfg['concept']!r} at {site}",
        "",
        f"{t['sae']['n']} test prompts; each arm's configuration chosen on {cfg['n_train']} train prompts. "
        f"Judge: CLIP ({cfg['clip_judge']}). Success: the image matches the prompt asking for the concept "
        f"(the prompts file's second column, else '{cfg['concept_template']}') better than the prompt as "
        f"asked; kept: CLIP image similarity to the unsteered image >= "
        f"{_bar_words(cfg)}; faithful: both.",
        "",
        "| arm | faithful success [95%] | success | kept | CLIP similarity | SSIM | chosen on train |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"sae": "SAE", "diffmean": "DiffMean", "prompting": "prompting", "unsteered": "unsteered"}
    for key, name in names.items():
        row = t[key]
        lo, hi = row["ci"]
        ch = result["chosen"].get(key, {}).get("config", "")
        lines.append(
            f"| {name} | {row['faithful_success']:.2f} [{lo:.2f}, {hi:.2f}] | {row['success']:.2f} | "
            f"{row['kept']:.2f} | {row['clip_similarity']:.3f} | {row['ssim']:.3f} | {ch} |"
        )
    d = t["sae_minus_diffmean"]
    feats = ", ".join(f"f{j}" for j in result["features"])
    lines += [
        "",
        f"SAE minus DiffMean (paired): {d['difference']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]",
        "",
        f"SAE features (contrast): {feats}",
    ]
    return "\n".join(lines) + "\n"


def _bar_words(cfg: dict) -> str:
    k = cfg["keep_similarity"]
    return "that of the prompting image of the same seed" if k is None else f"{k:g}"
