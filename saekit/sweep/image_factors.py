"""Which SAE feature, method and strength steers one factor of an image generator? Measured on ground truth.

The seeds ask it of FLUX: steer the colour (style) or the position (composition) of what FLUX draws
with an SAE feature, at which site, with which method, at what strength, and is that as good as other
ways? On `saekit testbed build`'s FluxPipeline every image has known factors and judges that read them
back from pixels, so the answer is a number:

1. prompts: captions of held-out digit images; for a target value v of the factor, the prompts ask for
   another value (so the steering has to change something), split into selection, train and test;
2. selection: the pipeline runs on selection prompts and on the same prompts with the factor set to v;
   the activations at the SAE's hook point (image tokens, every denoising step) give, per SAE latent,
   the mean shift from "not v" to "v" (the top `n_features` are the features), and the mean shift of
   the raw activations (DiffMean, the non-SAE baseline);
3. arms, each a method x strength grid, applied in the denoising loop (`steer_in_loop`) on every step:
   SAE `additive` (add s x the feature's own mean shift along its decoder row), SAE `clamp` (set the
   feature to s x its mean value on v-images), DiffMean (add s x the raw mean shift); and prompting
   (the caption asks for v), the reference that needs no steering at all; `--methods spatial
   spatial_clamp` add token-dependent edits (per-step, per-token maps: `saekit.steer.image.spatial`),
   and DiffMean's spatial twin beside its uniform push, for composition, which one vector added to
   every image token cannot move;
4. judging: success = the factor judge reads v; faithful = success and every other judged factor in
   `preserve` reads what it read on the unsteered image of the same seed;
   the site is either the SAE's hook point inside the loop, optionally on a window of steps
   (`--windows all early late`, a grid axis), or, with `--conditioning pooled`, FLUX's pooled CLIP
   prompt vector before it enters the transformer (edited once, read by every step through adaLN);
5. the protocol: each arm's method, strength and window are chosen on the train prompts (faithful success),
   and reported on the test prompts with a bootstrap interval, and the paired difference between the
   best SAE arm and DiffMean.

The pipeline is any diffusers FluxPipeline; only the factor judges and the caption format are the
testbed's (`saekit.testbed.fluxbed`). On FLUX.1 the same loop needs a judge that reads the factor
(a CLIP zero-shot judge, for instance); see docs/guide/fluxbed.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.sweep.image_runner import Generation, PipelineRunner, StepEdit, step_window

SWEEP_METHODS = ("swap",)
"""Methods the sweep builds from registered ones (`swap` = `clamp` on the rising and falling features)."""


@dataclass(frozen=True)
class FactorSweepConfig:
    """One factor sweep on a testbed FluxPipeline (see the module docstring)."""

    model: str
    """The FluxPipeline folder (`runs/fluxbed/pipeline`)."""
    sae: str
    """An SAE trained at one hook point of that pipeline (`saekit harvest diffusion` + `saekit train`)."""
    out: str = "runs/fluxbed/sweep"
    """Where results.json, table.md and the contact sheet go."""
    hook_point: str | None = None
    """Hook point to steer (default: the SAE's own, e.g. `transformer_blocks.1@image`)."""
    factor: str = "colour"
    """The factor to steer: colour | thickness | position | size | digit."""
    targets: tuple[str, ...] = ()
    """Values to steer toward (default: every value of the factor)."""
    methods: tuple[str, ...] = ("additive", "clamp")
    """SAE steering methods: `additive`, `clamp` (the same push on every image token), and the
    token-dependent `spatial` (add the features' per-step, per-token mean shift map, decoded through their
    decoder rows) and `spatial_clamp` (set the features to their per-token mean map on target images);
    `saekit.steer.image.spatial`; and `swap`, the surgery of the seeds: set the chosen features to s x
    their mean on target prompts and zero the `n_falling` features that fall most from the prompts without
    the target to those with it (the source value's features), the SAE error kept. DiffMean is additive,
    and with a spatial method also gets its spatial twin (the per-step, per-token mean difference of the
    activations), chosen on train like a method."""
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    """Multiples of the measured shift (additive, spatial) or of the feature's mean value on target
    images (clamp, spatial_clamp)."""
    n_features: int = 1
    """SAE features per target: the top by mean shift (additive, clamp), or by how much their per-token
    map moves (spatial methods: root mean square of the map shift over steps and tokens)."""
    n_falling: int = 4
    """`swap`: how many falling features (those of the value asked for instead) it zeroes."""
    n_select: int = 16
    """Prompts per target for choosing features and the DiffMean direction."""
    n_train: int = 12
    """Prompts per target that choose each arm's method and strength."""
    n_test: int = 12
    """Prompts per target reported."""
    preserve: tuple[str, ...] = ("colour", "thickness", "position", "size")
    """Other factors that must not change for a success to count as faithful (the steered one is dropped).
    The digit is left out by default: check its judge's accuracy on generations in the build report."""
    conditioning: Literal["none", "pooled", "text"] = "none"
    """`pooled`: steer FLUX's pooled CLIP prompt vector before it enters the transformer (the SAE is one
    trained on it: `saekit harvest clip --model <pipeline>/text_encoder --site text:pooled`), instead of
    an activation inside the denoising loop. The digits testbed found its conditioning vector the site
    that steers (docs/results/testbed_c2c/); this asks the same of a FluxPipeline. `text`: steer FLUX's
    T5 token embeddings (`prompt_embeds`, every text token the transformer attends to) before the loop,
    with an SAE trained on T5 token rows of the pipeline's own `encode_prompt`; `additive`/`clamp` and
    DiffMean push every text token alike, the spatial methods push each token by its own map (the
    position words' tokens most)."""
    select: Literal["contrast", "zero-shot", "judged"] = "contrast"
    """How the SAE features are chosen. `contrast`: the latents rising most from selection prompts without
    the target to the same prompts with it. `zero-shot` (with --conditioning pooled): the latents whose
    decoder direction is closest to the target's words' own pooled embedding minus the empty prompt's
    (`saekit.steer.image.concept`, what `saekit steer --concept` does). `judged`: the latents whose most
    active selection images the judge most often reads as the target (`concept.judged_features`), what the
    images show rather than what the prompts asked. The strength units still come from the selection
    prompts, so only the choice of features differs."""
    windows: tuple[str, ...] = ("all",)
    """Denoising-step windows an in-loop edit acts on, each a grid axis: `all`, `early` (the first half of
    the steps), `late` (the second half) or `A:B` (steps A to B-1). The pooled vector is read on every
    step, so with `--conditioning pooled` only `all` applies."""
    clip_judge: str | None = None
    """A CLIP folder or hub id: also judge every train configuration with CLIP (`saekit.sweep.clip_judge`:
    concept = margin of the caption asking for the target over the caption as asked; preservation = CLIP
    image similarity and SSIM to the unsteered image) and report how the two judges' rankings of the
    configurations agree (Spearman). The testbed's own CLIP: `saekit.testbed.fluxbed.clip`."""
    num_inference_steps: int = 12
    batch: int = 24
    """Prompts per pipeline call."""
    seed: int = 0
    build_config: str | None = None
    """The build's build_config.json (fits the judges); default: beside the pipeline folder."""
    device: str = "cpu"
    quiet: bool = False

    def __post_init__(self) -> None:
        for w in self.windows:
            step_window(w, self.num_inference_steps)
        from saekit.steer.image.spatial import SPATIAL_METHODS
        from saekit.steer.registry import get_method

        if not self.methods:
            raise SteeringError("--methods is empty: give at least one SAE method (e.g. additive spatial)")
        for m in self.methods:
            if m not in SPATIAL_METHODS + SWEEP_METHODS:
                try:
                    get_method(m)
                except Exception as exc:
                    raise SteeringError(
                        f"--methods {m!r}: use additive, clamp, swap, {', '.join(SPATIAL_METHODS)} or "
                        "another "
                        f"registered steering method ({exc})"
                    ) from exc
        if self.conditioning == "pooled" and any(m in SPATIAL_METHODS for m in self.methods):
            raise SteeringError(
                "--methods spatial/spatial_clamp are per-token edits of the image stream in the loop; the "
                "pooled vector has no tokens: drop --conditioning pooled or the spatial methods"
            )
        if self.select == "zero-shot" and self.conditioning != "pooled":
            raise SteeringError(
                "--select zero-shot reads the concept's embedding in the SAE's own space: it needs an SAE on "
                "the pooled CLIP vector and --conditioning pooled"
            )
        if self.conditioning != "none" and tuple(self.windows) != ("all",):
            raise SteeringError(
                f"--conditioning {self.conditioning} edits what every step reads; step windows apply to "
                f"in-loop edits only (got --windows {' '.join(self.windows)}): drop --windows"
            )


@dataclass
class ArmResult:
    arm: str
    method: str
    strength: float
    train: float
    test: float
    test_ci: tuple[float, float]
    test_success: float
    features: list[int] = field(default_factory=list)


# -- pure pieces --------------------------------------------------------------------------------------


def latent_shift(lat_on: Tensor, lat_off: Tensor, n: int) -> tuple[list[int], Tensor, Tensor]:
    """The `n` latents whose mean rises most from `lat_off [P, F]` to `lat_on [P, F]` (paired prompts,
    `saekit.steer.image.concept.contrast_features`), their mean shifts and their mean values on `lat_on`."""
    from saekit.steer.image.concept import contrast_features

    feats, rises = contrast_features(lat_on, lat_off, n)
    return feats, torch.tensor(rises, dtype=lat_on.dtype), lat_on.mean(0)[feats]


def faithful(pred: np.ndarray, base: np.ndarray, factor: int, target: int, keep: Sequence[int]) -> np.ndarray:
    """Per image: the factor reads `target` and every factor in `keep` reads as on the unsteered image."""
    ok = pred[:, factor] == target
    for j in keep:
        ok &= pred[:, j] == base[:, j]
    return ok


def bootstrap_mean(x: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of `x` (prompts resampled)."""
    if len(x) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(reps, len(x)), replace=True).mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


# -- the run ------------------------------------------------------------------------------------------


def _prompt_sets(cfg: FactorSweepConfig, build, factor: int, target: int, seed: int):
    """(selection, train, test) factor rows `[n, 5]` whose `factor` is not `target`, from the build's
    held-out digit images (`build`: its FluxbedConfig)."""
    from saekit.testbed.fluxbed.render import digit_split, sample_factors

    _, test_idx = digit_split(build.seed, build.test_fraction)
    rng = np.random.default_rng(seed)
    need = cfg.n_select + cfg.n_train + cfg.n_test
    rows: list[np.ndarray] = []
    while sum(len(r) for r in rows) < need:
        _, f = sample_factors(test_idx, 4 * need, rng, heldout=None)
        rows.append(f[f[:, factor] != target])
    f = np.concatenate(rows)[:need]
    a, b = cfg.n_select, cfg.n_select + cfg.n_train
    return f[:a], f[a:b], f[b:]


def _captions(rows: np.ndarray) -> list[str]:
    from saekit.testbed.fluxbed.build import render_caption

    return [render_caption(r) for r in rows]


def _with(rows: np.ndarray, factor: int, value: int) -> np.ndarray:
    out = rows.copy()
    out[:, factor] = value
    return out


class _Runner(PipelineRunner):
    """The testbed pipeline and the SAE (`PipelineRunner`: generation, edits, capture) with the factor
    judges, and the CLIP judge when asked for."""

    def __init__(self, cfg: FactorSweepConfig):
        import saekit
        from saekit.testbed.fluxbed.build import fit_judges, load_pipeline
        from saekit.testbed.fluxbed.config import FluxbedConfig
        from saekit.testbed.fluxbed.render import CANVAS

        self.cfg = cfg
        gen = Generation(cfg.num_inference_steps, CANVAS, CANVAS, guidance_scale=0.0, max_sequence_length=512,
                         batch=cfg.batch, seed=cfg.seed)  # fmt: skip
        sae = saekit.load(cfg.sae, device="cpu").eval()
        super().__init__(load_pipeline(cfg.model), sae, gen, conditioning=cfg.conditioning,
                         hook_point=cfg.hook_point)  # fmt: skip
        bc = Path(cfg.build_config) if cfg.build_config else Path(cfg.model).parent / "build_config.json"
        if not bc.is_file():
            raise SteeringError(
                f"{bc} not found: the factor judges are fitted from the testbed build's config; pass "
                "--build-config runs/fluxbed/build_config.json"
            )
        fields = set(FluxbedConfig.__dataclass_fields__)
        raw = {k: v for k, v in json.loads(bc.read_text()).items() if k in fields}
        self.build = FluxbedConfig(**raw)
        self.judges = fit_judges(self.build)
        self.clip = None
        if cfg.clip_judge:
            from saekit.sweep.clip_judge import ClipJudge

            self.clip = ClipJudge(cfg.clip_judge)

    def clip_scores(self, img: Tensor, base_img: Tensor, wanted: list[str], asked: list[str]) -> dict:
        """Mean CLIP figures of steered images against their unsteered twins (see `clip_judge`)."""
        from saekit.sweep.clip_judge import ssim

        margin = self.clip.concept_margin(img, wanted, asked)
        return {"clip_concept": float((margin > 0).mean()), "clip_margin": float(margin.mean()),
                "clip_similarity": float(self.clip.similarity(img, base_img).mean()),
                "ssim": float(ssim(img, base_img).mean())}  # fmt: skip

    def judge(self, images: Tensor) -> np.ndarray:
        return self.judges.predict(images)[0]


def _factor_values(cfg: FactorSweepConfig) -> tuple[list[str], list[str]]:
    """(every value of the factor, the targets asked for), with a clear error for an unknown name."""
    from saekit.testbed.fluxbed.render import FACTORS, factor_values

    if cfg.factor not in FACTORS:
        raise SteeringError(f"factor {cfg.factor!r}: choose one of {', '.join(FACTORS)}")
    values = factor_values(cfg.factor)
    targets = list(cfg.targets) or values
    unknown = [t for t in targets if t not in values]
    if unknown:
        raise SteeringError(f"{cfg.factor} has no value {unknown[0]!r}; values: {', '.join(values)}")
    return values, targets


def run_factor_sweep(cfg: FactorSweepConfig) -> dict:
    """Run the sweep (module docstring); writes results.json, table.md and contact.png into `cfg.out`."""
    from tqdm import tqdm

    from saekit.testbed.fluxbed.render import FACTORS

    values, targets = _factor_values(cfg)
    torch.manual_seed(cfg.seed)
    fi = FACTORS.index(cfg.factor)
    keep = [FACTORS.index(p) for p in cfg.preserve if p != cfg.factor]
    r = _Runner(cfg)
    per_target, rows_test = [], {}
    sheet: list[tuple[str, str, Tensor]] = []  # (arm, target, test images): the contact sheet
    configs = factor_sweep_configs(cfg)
    for ti, tname in enumerate(tqdm(targets, desc=f"{cfg.factor} targets", disable=cfg.quiet)):
        entry, test_rows = _one_target(r, configs, fi, values.index(tname), tname, keep, ti, sheet)
        per_target.append(entry)
        rows_test[tname] = test_rows
    result = _summarise(cfg, per_target, rows_test)
    write_outputs(cfg.out, result, sheet, table_markdown(result))
    return result


def factor_sweep_configs(cfg: FactorSweepConfig) -> list[tuple]:
    """The SAE and DiffMean grid (arm, method, strength, window): DiffMean is additive, and spatial too
    when a spatial SAE method is asked for (its token-dependent twin)."""
    configs = [("sae", m, s, w) for m in cfg.methods for s in cfg.strengths for w in cfg.windows]
    dm_methods = ["additive"] + (["spatial"] if _spatial(cfg) else [])
    return configs + [("diffmean", m, s, w) for m in dm_methods for s in cfg.strengths for w in cfg.windows]


def _spatial(cfg: FactorSweepConfig) -> bool:
    from saekit.steer.image.spatial import SPATIAL_METHODS

    return any(m in SPATIAL_METHODS for m in cfg.methods)


def contrast_edits(r: PipelineRunner, cfg, off: list[str], on: list[str], tname: str, judge_fn=None):
    """From selection prompts without (`off`) and with (`on`) the target: `edit_for(arm, method, s)`,
    the contrast-chosen features and (with a spatial method) the spatially chosen ones. `judge_fn(images,
    plain_prompts) -> [N]` scores images for the target (needed by `select == "judged"`; `plain_prompts`
    are the prompts as asked, without the target). `cfg` (a factor or concept sweep config) says how:
    its methods, n_features, n_falling and select."""
    from saekit.steer.image import spatial as SP
    from saekit.steer.image.diffusion import sae_edit

    x_off, f_off, *maps_off = r.capture(off, spatial=_spatial(cfg))
    x_on, f_on, *maps_on = r.capture(on, spatial=_spatial(cfg))
    feats, shift, mean_on = latent_shift(f_on, f_off, cfg.n_features)
    falling = latent_shift(f_off, f_on, cfg.n_falling)[0] if "swap" in cfg.methods else []
    if cfg.select == "zero-shot":
        from saekit.steer.image.concept import concept_direction, zero_shot_features

        e_c, e_0 = r.embeds([tname])[1], r.embeds([""])[1]
        feats = zero_shot_features(r.sae, concept_direction(e_c, e_0), cfg.n_features)[0]
        shift = (f_on.mean(0) - f_off.mean(0))[feats]
        mean_on = f_on.mean(0)[feats]
    if cfg.select == "judged":
        from saekit.steer.image.concept import judged_features

        if judge_fn is None:
            raise SteeringError("--select judged needs a judge of the images (the factor or the CLIP judge)")
        scores = torch.as_tensor(judge_fn(r.generate(off + on), off + off), dtype=torch.float32)
        feats = judged_features(torch.cat([f_off, f_on]), scores, cfg.n_features)[0]
        shift = (f_on.mean(0) - f_off.mean(0))[feats]
        mean_on = f_on.mean(0)[feats]
    direction = (x_on - x_off).mean(0)
    sp_feats: list[int] = []
    maps: dict[str, Tensor] = {}
    if maps_on:  # per-step, per-token maps: [S, T, d] for DiffMean, [S, T, k] for the chosen features
        fmap_on, fmap_off = maps_on[1].mean(0), maps_off[1].mean(0)
        sp_feats = SP.spatial_features(fmap_on, fmap_off, cfg.n_features)[0]
        maps = {
            "diffmean": SP.map_mean_shift(maps_on[0], maps_off[0]),
            "spatial": (fmap_on - fmap_off)[..., sp_feats],
            "spatial_clamp": fmap_on[..., sp_feats],
        }

    def edit_for(arm: str, method: str, s: float):
        if arm == "diffmean" and method == "spatial":
            return StepEdit(lambda x, step: SP.spatial_add(x, maps["diffmean"], s, step))
        if arm == "diffmean":
            return lambda x, d=direction * s: x + d.to(x.dtype)
        if method in SP.SPATIAL_METHODS:
            mode = "add" if method == "spatial" else "set"
            return StepEdit(
                lambda x, step: SP.spatial_sae_edit(x, r.sae, sp_feats, maps[method], s, mode=mode, step=step)
            )
        if method == "swap":  # clamp: the target's features to s x their mean, the falling ones to 0
            return sae_edit(
                "clamp", r.sae, feats + falling, [float(a) for a in mean_on * s] + [0.0] * len(falling)
            )
        amounts = (shift if method == "additive" else mean_on) * s
        return sae_edit(method, r.sae, feats, [float(a) for a in amounts])

    return edit_for, feats, sp_feats


def _one_target(r: _Runner, configs: list[tuple], fi: int, tv: int, tname: str, keep: list[int], ti: int,
                sheet: list) -> tuple[dict, dict]:  # fmt: skip
    """Select features and the DiffMean direction for target value `tv`, run every configuration on the
    train prompts, the chosen one per arm on the test prompts; (per-target record, test outcomes)."""
    cfg = r.cfg
    sel, train, test = _prompt_sets(cfg, r.build, fi, tv, cfg.seed + 101 * ti)
    judge_fn = lambda imgs, _: r.judge(imgs)[:, fi] == tv  # noqa: E731
    edit_for, feats, sp_feats = contrast_edits(r, cfg, _captions(sel), _captions(_with(sel, fi, tv)), tname,
                                               judge_fn)  # fmt: skip
    scores: dict[str, dict] = {}
    chosen: dict[str, tuple] = {}
    clip_rows: list[dict] = []
    for split, rows in (("train", train), ("test", test)):
        prompts = _captions(rows)
        base_img = r.generate(prompts)
        ref_img = r.generate(_captions(_with(rows, fi, tv)))
        base, ref = r.judge(base_img), r.judge(ref_img)
        wanted = _captions(_with(rows, fi, tv))
        if split == "test":
            sheet += [("unsteered", tname, base_img[:8]), ("prompting", tname, ref_img[:8])]
        scores[split] = {"prompting": faithful(ref, base, fi, tv, keep), "unsteered": base[:, fi] == tv}
        # every configuration on train; on test only each arm's choice
        todo = configs if split == "train" else list(chosen.values())
        for arm, method, s, w in todo:
            img = r.generate(prompts, edit_for(arm, method, s), window=w)
            pred = r.judge(img)
            if split == "test":
                sheet.append((arm, tname, img[:8]))
            scores[split][(arm, method, s, w)] = faithful(pred, base, fi, tv, keep)
            scores[split][(arm, method, s, w, "success")] = pred[:, fi] == tv
            scores[split][(arm, method, s, w, "pred")] = pred
            if r.clip is not None and split == "train":
                kept = faithful(np.where(np.arange(pred.shape[1]) == fi, tv, pred), base, fi, tv, keep)
                clip_rows.append({
                    "config": f"{arm}:{method}:{s:g}:{w}", "success": float((pred[:, fi] == tv).mean()),
                    "kept": float(kept.mean()), "faithful": float(scores[split][(arm, method, s, w)].mean()),
                    **r.clip_scores(img, base_img, wanted, prompts)})  # fmt: skip
        if split == "train":  # most faithful successes; ties go to the weaker push
            for arm in ("sae", "diffmean"):
                cands = [c for c in configs if c[0] == arm]
                chosen[arm] = max(cands, key=lambda c: (scores["train"][c].mean(), -c[2]))
    entry = {
        "target": tname, "features": feats, **({"spatial_features": sp_feats} if sp_feats else {}),
        "chosen": {a: {"method": c[1], "strength": c[2], "window": c[3],
                       "train": float(scores["train"][c].mean())} for a, c in chosen.items()},
        "train_grid": {f"{c[0]}:{c[1]}:{c[2]:g}:{c[3]}": float(scores["train"][c].mean()) for c in configs},
        **({"clip_grid": clip_rows} if clip_rows else {}),
    }  # fmt: skip
    test_rows = {
        "sae": scores["test"][chosen["sae"]],
        "sae_success": scores["test"][(*chosen["sae"], "success")],
        "diffmean": scores["test"][chosen["diffmean"]],
        "diffmean_success": scores["test"][(*chosen["diffmean"], "success")],
        "prompting": scores["test"]["prompting"],
        "unsteered": scores["test"]["unsteered"],
        **_kept_rows(scores["test"], chosen, base, keep),
    }
    return entry, test_rows


def _kept_rows(test_scores: dict, chosen: dict, base: np.ndarray, keep: list[int]) -> dict[str, np.ndarray]:
    """Per chosen arm and preserved factor, per test image: does that factor read as on the unsteered
    image (`<arm>_kept_<factor>`)? Says which factor a steered image that is not faithful changed."""
    from saekit.testbed.fluxbed.render import FACTORS

    return {f"{arm}_kept_{FACTORS[j]}": test_scores[(*c, "pred")][:, j] == base[:, j]
            for arm, c in chosen.items() for j in keep}  # fmt: skip


def _summarise(cfg: FactorSweepConfig, per_target: list[dict], rows_test: dict) -> dict:
    def pooled(key: str) -> np.ndarray:
        return np.concatenate([rows_test[t][key] for t in rows_test]).astype(float)

    table = {}
    for key in ("sae", "diffmean", "prompting", "unsteered"):
        x = pooled(key)
        table[key] = {"faithful_success": float(x.mean()), "ci": bootstrap_mean(x), "n": int(len(x))}
    first = next(iter(rows_test.values()), {})
    for key in ("sae", "diffmean"):
        table[key]["success"] = float(pooled(f"{key}_success").mean())
        kept = [k for k in first if k.startswith(f"{key}_kept_")]
        if kept:  # which other factor the chosen arm changes, when it is not faithful
            table[key]["kept"] = {k.split("_kept_", 1)[1]: float(pooled(k).mean()) for k in kept}
    diff = pooled("sae") - pooled("diffmean")
    table["sae_minus_diffmean"] = {"difference": float(diff.mean()), "ci": bootstrap_mean(diff)}
    grid = [row for pt in per_target for row in pt.get("clip_grid", [])]
    if grid:  # do the CLIP judge and the factor judges rank the configurations alike?
        from saekit.sweep.clip_judge import rank_agreement

        def agree(a: str, b: str) -> dict:
            return rank_agreement([g[a] for g in grid], [g[b] for g in grid])

        table["judge_agreement"] = {
            "concept (factor success vs CLIP margin > 0)": agree("success", "clip_concept"),
            "concept (factor success vs mean CLIP margin)": agree("success", "clip_margin"),
            "preservation (other factors kept vs CLIP image similarity)": agree("kept", "clip_similarity"),
            "preservation (other factors kept vs SSIM)": agree("kept", "ssim"),
        }
    return {
        "config": asdict(cfg),
        "per_target": per_target,
        "test": table,
        "per_target_test": {t: {k: float(v.mean()) for k, v in d.items()} for t, d in rows_test.items()},
    }


def write_outputs(out: str | Path, result: dict, sheet: list[tuple[str, str, Tensor]], table: str) -> None:
    """results.json, table.md (`table`), and contact.png: per target, rows of the first 8 test prompts
    unsteered, with prompting, with the chosen SAE arm and with the chosen DiffMean (rows listed in
    contact.json). Every image sweep writes its folder this way."""
    from saekit.atomic import write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_contact_sheet(out, sheet, ("unsteered", "prompting", "sae", "diffmean"))
    write_text_atomic(out / "results.json", json.dumps(result, indent=2, default=float) + "\n")
    write_text_atomic(out / "table.md", table)


def _site_words(cfg: dict) -> str:
    how = " (features chosen zero-shot)" if cfg.get("select") == "zero-shot" else ""
    if cfg.get("conditioning") == "pooled":
        return "the pooled CLIP prompt vector (conditioning)" + how
    if cfg.get("conditioning") == "text":
        return "the T5 prompt token embeddings (conditioning)" + how
    return (cfg["hook_point"] or "the SAE hook point") + how


def _shown_features(pt: dict, choice: dict) -> list[int]:
    """The features the chosen SAE arm used: the spatially chosen ones for a spatial method."""
    spatial = choice.get("method", "").startswith("spatial") and "spatial_features" in pt
    return pt["spatial_features"] if spatial else pt["features"]


def _dm_method_words(choice: dict) -> str:
    m = choice.get("method", "additive")
    return "" if m == "additive" else f"{m} "


def _window_words(choice: dict) -> str:
    w = choice.get("window", "all")
    return "" if w == "all" else f" steps {w}"


def write_contact_sheet(out: Path, sheet: list[tuple[str, str, Tensor]], arm_order: Sequence[str]) -> None:
    """contact.png (one row per (target, arm), arms in `arm_order`, short rows padded black) and
    contact.json naming each row's arm and target."""
    from saekit.atomic import write_bytes_atomic, write_text_atomic
    from saekit.testbed.fluxbed.report import image_grid_png

    rank = {arm: i for i, arm in enumerate(arm_order)}
    sheet = sorted(sheet, key=lambda row: (row[1], rank.get(row[0], len(rank)), row[0]))
    if not sheet:
        return
    cols = max(len(imgs) for _, _, imgs in sheet)
    padded = [torch.cat([im, im.new_zeros(cols - len(im), *im.shape[1:])]) for _, _, im in sheet]
    write_bytes_atomic(out / "contact.png", image_grid_png(torch.cat(padded), cols=cols))
    rows = [{"row": i, "arm": arm, "target": t} for i, (arm, t, _) in enumerate(sheet)]
    write_text_atomic(out / "contact.json", json.dumps(rows, indent=1) + "\n")


def table_markdown(result: dict) -> str:
    cfg, t = result["config"], result["test"]
    lines = [
        f"# Steering `{cfg['factor']}` on {cfg['model']} at {_site_words(cfg)}",
        "",
        f"Test prompts ({t['sae']['n']} = targets x {cfg['n_test']}); each arm's method and strength "
        "chosen on the train prompts. Faithful success: the factor judge reads the target and "
        f"{', '.join(p for p in cfg['preserve'] if p != cfg['factor'])} read as on the unsteered image.",
        "",
        "| arm | faithful success [95%] | success (target read) |",
        "|---|---|---|",
    ]
    arms = (
        ("sae", "SAE (best method, strength)"),
        ("diffmean", "DiffMean"),
        ("prompting", "prompting (caption asks for the target)"),
        ("unsteered", "unsteered"),
    )
    for key, name in arms:
        row = t[key]
        succ = f"{row['success']:.2f}" if "success" in row else "-"
        lo, hi = row["ci"]
        lines.append(f"| {name} | {row['faithful_success']:.2f} [{lo:.2f}, {hi:.2f}] | {succ} |")
    d = t["sae_minus_diffmean"]
    if "judge_agreement" in t:
        lines += ["", "CLIP judge vs factor judges over the train configurations (Spearman, 95% CI):", ""]
        for name, a in t["judge_agreement"].items():
            lo, hi = a["ci"]
            lines.append(f"- {name}: {a['spearman']:+.2f} [{lo:+.2f}, {hi:+.2f}] (n={a['n']})")
    kept = [
        (name, t[key]["kept"]) for key, name in (("sae", "SAE"), ("diffmean", "DiffMean")) if "kept" in t[key]
    ]
    if kept:
        lines += ["", "Other factors read as on the unsteered image (test, the chosen arm):", ""]
        lines += [f"- {name}: " + ", ".join(f"{f} {v:.2f}" for f, v in k.items()) for name, k in kept]
    lines += [
        "",
        f"SAE minus DiffMean (paired): {d['difference']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]",
        "",
        "| target | features | SAE choice (train) | DiffMean choice (train) | SAE test | DiffMean test "
        "| prompting test |",
        "|---|---|---|---|---|---|---|",
    ]
    for pt in result["per_target"]:
        name = pt["target"]
        s, dm = pt["chosen"]["sae"], pt["chosen"]["diffmean"]
        te = result["per_target_test"][name]
        lines.append(
            f"| {name} | {', '.join(f'f{j}' for j in _shown_features(pt, s))} | {s['method']} "
            f"x{s['strength']:g}{_window_words(s)} ({s['train']:.2f}) | {_dm_method_words(dm)}"
            f"x{dm['strength']:g}{_window_words(dm)} "
            f"({dm['train']:.2f}) | {te['sae']:.2f} | "
            f"{te['diffmean']:.2f} | {te['prompting']:.2f} |"
        )
    return "\n".join(lines) + "\n"
