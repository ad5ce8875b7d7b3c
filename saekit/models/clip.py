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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
            f"CLIP layer {site.layer} out of range: hidden_states has {n + 1} entries (0..{n}, or -1..-{n + 1})"
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
        tok = transformers.AutoTokenizer.from_pretrained(name_or_path) if tower != "vision" else None
    except OSError as exc:
        raise ModelLoadError(
            f"cannot load CLIP {name_or_path!r} ({exc}); give a local folder with config.json and weights, "
            "or a hub name on a machine with internet"
        ) from exc
    return LoadedClip(model, proc, tok, name_or_path)


def iter_image_batches(images: Iterable, processor, batch_size: int) -> Iterator[tuple[list[int], Tensor]]:
    """`(ids, pixel_values [B, 3, H, W])` batches from ImageItems."""
    buf: list = []
    for item in images:
        buf.append(item)
        if len(buf) == batch_size:
            yield (
                [i.id for i in buf],
                processor(images=[i.pixels for i in buf], return_tensors="pt")["pixel_values"],
            )
            buf = []
    if buf:
        yield (
            [i.id for i in buf],
            processor(images=[i.pixels for i in buf], return_tensors="pt")["pixel_values"],
        )


@torch.no_grad()
def harvest_clip(
    model: nn.Module,
    site: ClipSite,
    writer,
    *,
    images: Iterable | None = None,
    processor=None,
    captions: list[str] | None = None,
    tokenizer=None,
    batch_size: int = 16,
    quiet: bool = False,
) -> int:
    """Write CLIP activations at `site` into a `StoreWriter` (`doc_id` = image/caption index,
    `position` = token position or -1 for pooled/mean rows). Returns rows written."""
    from tqdm import tqdm

    rows = 0
    if site.tower == "vision":
        if images is None or processor is None:
            raise HookPointError("harvesting the vision tower needs images and an image processor")
        batches = (
            (ids, {"pixel_values": pv.to(model.dtype)})
            for ids, pv in iter_image_batches(images, processor, batch_size)
        )
    else:
        if captions is None or tokenizer is None:
            raise HookPointError("harvesting the text tower needs captions and a tokenizer")

        def text_batches():
            for s in range(0, len(captions), batch_size):
                enc = tokenizer(
                    captions[s : s + batch_size], padding=True, truncation=True, return_tensors="pt"
                )
                yield (
                    list(range(s, s + len(enc["input_ids"]))),
                    {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
                )

        batches = text_batches()
    for ids, kw in tqdm(batches, desc=f"CLIP {site.tower}", disable=quiet):
        acts = clip_activations(model, site, **kw).float()
        doc = torch.tensor(ids, dtype=torch.int32)
        if site.token == "all":
            T = acts.shape[0] // len(ids) if site.tower == "vision" else None
            if T is not None:
                doc, pos = doc.repeat_interleave(T), torch.arange(T, dtype=torch.int32).repeat(len(ids))
            else:
                mask = kw["attention_mask"].bool()
                doc = doc[:, None].expand_as(mask)[mask]
                pos = torch.arange(mask.shape[1], dtype=torch.int32)[None].expand_as(mask)[mask]
        else:
            pos = torch.full(
                (len(ids),), site.token if isinstance(site.token, int) else -1, dtype=torch.int32
            )
        writer.add(acts, {"doc_id": doc, "position": pos, "token_id": torch.full_like(doc, -1)})
        rows += len(acts)
    return rows
