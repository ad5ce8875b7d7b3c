"""CLIP: load (users with the weights), and read embeddings at any layer/token through saekit.hooks.

The seed recipe takes the penultimate layer's CLS token, `hidden_states[-2][:, 0, :]`; CLIP text has no
CLS, its summary token is EOS (what `pooler_output` reads). `ClipSite` names any such choice. Reading
goes through `saekit.hooks.capture` with `stop_after_last`, so the layers after the hooked one never
run (a penultimate-layer harvest skips the last layer), and the result equals `output_hidden_states`
indexing (tested).

transformers 5.x module paths: `CLIPVisionModel` / `CLIPTextModel` have no `vision_model.` /
`text_model.` prefix (`encoder.layers.N`), `CLIPModel` does (`vision_model.encoder.layers.N`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from saekit.errors import HookPointError, ModelLoadError

Tower = Literal["vision", "text"]


@dataclass(frozen=True)
class ClipSite:
    """Where to read a CLIP embedding."""

    tower: Tower = "vision"
    """"vision" (images) or "text" (captions)."""
    layer: int = -2
    """Index into `hidden_states` (0 = embeddings, -1 = last layer, -2 = penultimate: the seed recipe)."""
    token: str | int = "cls"
    """"cls" (position 0, vision), "eos" (text end token), "mean" (over valid tokens), "all" (every
    token, rows flattened), "pooled" (the model's `pooler_output`; ignores `layer`) or a position."""

    def __post_init__(self) -> None:
        if self.tower not in ("vision", "text"):
            raise HookPointError(f"CLIP tower must be 'vision' or 'text', found {self.tower!r}")
        if isinstance(self.token, str) and self.token not in ("cls", "eos", "mean", "all", "pooled"):
            raise HookPointError(
                f"CLIP token {self.token!r} unknown; use cls, eos, mean, all, pooled or a position"
            )
        if self.token == "eos" and self.tower != "text":
            raise HookPointError("token='eos' is for the text tower; images use 'cls' (position 0)")


SEED_SITE = ClipSite("vision", -2, "cls")
"""The seed recipe: penultimate vision layer, CLS token."""


def tower_module(model: nn.Module, tower: Tower) -> tuple[nn.Module, str]:
    """The tower's transformer (`CLIPVisionTransformer` / `CLIPTextTransformer`) and its module prefix."""
    attr = "vision_model" if tower == "vision" else "text_model"
    if hasattr(model, attr):
        return getattr(model, attr), f"{attr}."
    expected = "CLIPVision" if tower == "vision" else "CLIPText"
    if type(model).__name__.startswith(expected) and hasattr(model, "encoder"):
        return model, ""
    raise HookPointError(
        f"{type(model).__name__} has no {tower} tower; use CLIPModel, or {expected}Model for tower={tower!r}"
    )


def hidden_state_hook(model: nn.Module, site: ClipSite) -> str:
    """The hook point whose output is `hidden_states[site.layer]`."""
    tm, prefix = tower_module(model, site.tower)
    n = len(tm.encoder.layers)
    idx = site.layer if site.layer >= 0 else n + 1 + site.layer
    if not 0 <= idx <= n:
        raise HookPointError(
            f"CLIP layer {site.layer} out of range: hidden_states has {n + 1} entries (0..{n}, or "
            f"-1..-{n + 1})"
        )
    if idx == 0:
        return prefix + ("pre_layrnorm" if site.tower == "vision" else "embeddings")
    return f"{prefix}encoder.layers.{idx - 1}"


def eos_positions(model: nn.Module, input_ids: Tensor) -> Tensor:
    """Position of the EOS token per row, the way CLIP's text pooler finds it."""
    tm, _ = tower_module(model, "text")
    eos = getattr(tm.config, "eos_token_id", None) if hasattr(tm, "config") else None
    if eos is None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    if eos is None or eos == 2:  # legacy configs: EOS is the highest token id
        return input_ids.to(torch.int).argmax(dim=-1)
    return (input_ids == eos).to(torch.int).argmax(dim=-1)


def select_tokens(
    h_BTD: Tensor,
    site: ClipSite,
    *,
    input_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    model: nn.Module | None = None,
) -> Tensor:
    """`[B, T, d]` -> `[B, d]` (or `[B*T_valid, d]` for "all") per the site's token choice."""
    if site.token == "cls":
        return h_BTD[:, 0]
    if isinstance(site.token, int):
        return h_BTD[:, site.token]
    valid = (
        attention_mask.bool()
        if attention_mask is not None
        else torch.ones(h_BTD.shape[:2], dtype=torch.bool, device=h_BTD.device)
    )
    if site.token == "eos":
        if input_ids is None or model is None:
            raise HookPointError("token='eos' needs input_ids and the model")
        pos = eos_positions(model, input_ids).to(h_BTD.device)
        return h_BTD[torch.arange(len(h_BTD), device=h_BTD.device), pos]
    if site.token == "mean":
        w = valid.to(h_BTD.dtype)[..., None]
        return (h_BTD * w).sum(1) / w.sum(1).clamp_min(1)
    return h_BTD[valid]  # "all"


@torch.no_grad()
def clip_activations(
    model: nn.Module,
    site: ClipSite,
    *,
    pixel_values: Tensor | None = None,
    input_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Embeddings at `site` for one batch: `[B, d]` (`[n_tokens, d]` for token="all")."""
    from saekit.hooks import capture

    tm, _ = tower_module(model, site.tower)
    if site.tower == "vision":
        if pixel_values is None:
            raise HookPointError("the vision tower needs pixel_values (use a CLIPImageProcessor)")
        kwargs = {"pixel_values": pixel_values}
    else:
        if input_ids is None:
            raise HookPointError("the text tower needs input_ids (use the CLIP tokenizer)")
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if site.token == "pooled":
        return tm(**kwargs).pooler_output
    hp = hidden_state_hook(model, site)
    with capture(model, [hp], stop_after_last=True) as cap:
        tm(**kwargs)
    h = cap.activations[hp]
    if site.tower == "vision":
        attention_mask = None
    return select_tokens(h, site, input_ids=input_ids, attention_mask=attention_mask, model=model)


class LoadedClip(NamedTuple):
    model: nn.Module
    processor: object | None
    """CLIPImageProcessor (vision) or None."""
    tokenizer: object | None
    """CLIP tokenizer (text) or None."""
    name: str


def load_clip(
    name_or_path: str,
    *,
    tower: Literal["vision", "text", "both"] = "vision",
    dtype: str = "float32",
    device: str = "cpu",
) -> LoadedClip:
    """`from_pretrained` the right CLIP class (users with the weights; never called in tests)."""
    import transformers

    cls = {
        "vision": transformers.CLIPVisionModel,
        "text": transformers.CLIPTextModel,
        "both": transformers.CLIPModel,
    }[tower]
    try:
        model = cls.from_pretrained(name_or_path, dtype=getattr(torch, dtype)).to(device).eval()
        proc = transformers.CLIPImageProcessor.from_pretrained(name_or_path) if tower != "text" else None
        tok = _text_tokenizer(name_or_path) if tower != "vision" else None
    except OSError as exc:
        raise ModelLoadError(
            f"cannot load CLIP {name_or_path!r} ({exc}); give a local folder with config.json and weights, "
            "or a hub name on a machine with internet"
        ) from exc
    return LoadedClip(model, proc, tok, name_or_path)


def _text_tokenizer(name_or_path: str):
    """The tokenizer in the CLIP folder; for a diffusers pipeline's `text_encoder/` subfolder (FLUX.1,
    `saekit testbed build`), which has none, the pipeline's sibling `tokenizer/` that feeds it."""
    import transformers

    here, sibling = Path(name_or_path), Path(name_or_path).parent / "tokenizer"
    own = any((here / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json"))
    if here.is_dir() and not own and here.name == "text_encoder" and sibling.is_dir():
        return transformers.AutoTokenizer.from_pretrained(str(sibling))
    return transformers.AutoTokenizer.from_pretrained(name_or_path)


def site_positions(
    site: ClipSite, n_items: int, n_tokens: int, *, model=None, input_ids=None, attention_mask=None
):
    """`(item [n], position [n])` of the rows `clip_activations` returns for a batch of `n_items`.

    Position = the token's index in the tower's sequence: vision CLS = 0 and patch p = 1 + p
    (row-major), text tokens by index (EOS rows: the EOS position); -1 for mean / pooled rows.
    """
    items = torch.arange(n_items, dtype=torch.int32)
    if site.token == "all":
        if site.tower == "vision" or attention_mask is None:
            return items.repeat_interleave(n_tokens), torch.arange(n_tokens, dtype=torch.int32).repeat(
                n_items
            )
        mask = attention_mask.bool().cpu()
        pos = torch.arange(mask.shape[1], dtype=torch.int32)[None].expand_as(mask)
        return items[:, None].expand_as(mask)[mask], pos[mask]
    if site.token == "cls":
        return items, torch.zeros(n_items, dtype=torch.int32)
    if isinstance(site.token, int):
        return items, torch.full((n_items,), site.token % n_tokens, dtype=torch.int32)
    if site.token == "eos" and input_ids is not None and model is not None:
        return items, eos_positions(model, input_ids).cpu().to(torch.int32)
    return items, torch.full((n_items,), -1, dtype=torch.int32)


def patch_grid(model: nn.Module) -> list[int] | None:
    """`[rows, cols]` of the vision tower's patch tokens (None without a vision tower)."""
    try:
        tm, _ = tower_module(model, "vision")
    except HookPointError:
        return None
    cfg = tm.config
    side = int(cfg.image_size) // int(cfg.patch_size)
    return [side, side]
