"""Kandinsky 2.2 (diffusers): the prior (text -> CLIP image embedding) and the decoder (embedding -> image).

Kandinsky 2.2 generates in two stages, which is what makes conditioning-level steering natural:
`KandinskyV22PriorPipeline` maps a prompt to a CLIP ViT-bigG image embedding (`image_embeds [B, 1280]`,
plus `negative_image_embeds` for classifier-free guidance), and `KandinskyV22Pipeline` (a UNet with a
MoVQ image decoder) renders an image from those embeddings alone. A CLIP image-embedding SAE edits
`image_embeds` between the two (`saekit.steer.image_kandinsky`).

Loading: a hub id (`kandinsky-community/kandinsky-2-2-decoder` / `-prior`, needs internet) or a local
folder written by `save_pretrained`; the folder's model_index.json must name the expected class, so a
prior passed as the decoder (or the reverse) is refused with the fix instead of failing inside diffusers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from saekit.errors import ModelLoadError

DEFAULT_DECODER = "kandinsky-community/kandinsky-2-2-decoder"
DEFAULT_PRIOR = "kandinsky-community/kandinsky-2-2-prior"
CLASSES = {"decoder": "KandinskyV22Pipeline", "prior": "KandinskyV22PriorPipeline"}
Stage = Literal["decoder", "prior"]


class Kandinsky(NamedTuple):
    """The two Kandinsky 2.2 pipelines, loaded and placed."""

    prior: Any
    """`KandinskyV22PriorPipeline`: prompt -> image_embeds, negative_image_embeds."""
    decoder: Any
    """`KandinskyV22Pipeline`: image_embeds (+ negative) -> images."""


def _check_class(name: str, stage: Stage) -> None:
    from saekit.models.load import diffusers_class

    found = diffusers_class(name)
    if found is not None and found != CLASSES[stage]:
        other = "prior" if stage == "decoder" else "decoder"
        hint = " (--model and --prior swapped?)" if found == CLASSES[other] else ""
        raise ModelLoadError(
            f"{name} holds a {found}, but the Kandinsky 2.2 {stage} ({CLASSES[stage]}) was expected{hint}; "
            f"pass the {stage} folder (model_index.json with _class_name {CLASSES[stage]})"
        )


def load_kandinsky_pipeline(
    name: str,
    stage: Stage,
    *,
    dtype: str = "auto",
    device: str | torch.device = "auto",
    offload: str = "none",
):
    """One Kandinsky 2.2 stage from a hub id or folder, on `device` or CPU-offloaded onto it."""
    import diffusers

    from saekit.device import auto_model_dtype, resolve_device
    from saekit.models.load import _offline_error
    from saekit.models.offload import check_offload, place_pipeline

    dev = resolve_device(device)
    check_offload(offload, dev)
    _check_class(name, stage)
    dt = auto_model_dtype(dev) if dtype == "auto" else dtype
    cls = getattr(diffusers, CLASSES[stage])
    try:
        pipe = cls.from_pretrained(name, dtype=getattr(torch, dt))
    except (OSError, ValueError, TypeError) as exc:
        err = ModelLoadError(f"cannot load the Kandinsky 2.2 {stage} {name!r}: {exc}")
        if not Path(name).exists():
            raise _offline_error(name, f"Kandinsky 2.2 {stage}", err) from exc
        raise ModelLoadError(
            f"cannot load the Kandinsky 2.2 {stage} in {name}: {exc}; it must be a {CLASSES[stage]} folder "
            "written by save_pretrained (model_index.json and its component folders)"
        ) from exc
    return place_pipeline(pipe, dev, offload)


def default_prior_for(decoder: str) -> str:
    """The prior that goes with a decoder: the community prior for the community decoder, else refuse."""
    if decoder.strip().rstrip("/") == DEFAULT_DECODER:
        return DEFAULT_PRIOR
    raise ModelLoadError(
        f"Kandinsky 2.2 needs its prior as well as the decoder {decoder!r}: pass --prior PATH_OR_ID "
        f"(e.g. {DEFAULT_PRIOR}), the KandinskyV22PriorPipeline that turns the prompt into image embeddings"
    )


def load_kandinsky(
    decoder: str = DEFAULT_DECODER,
    prior: str | None = None,
    *,
    dtype: str = "auto",
    device: str | torch.device = "auto",
    offload: str = "none",
) -> Kandinsky:
    """Both stages; `prior` defaults to the community prior only for the community decoder."""
    prior = prior or default_prior_for(decoder)
    _check_class(prior, "prior")
    _check_class(decoder, "decoder")
    kw = {"dtype": dtype, "device": device, "offload": offload}
    return Kandinsky(
        load_kandinsky_pipeline(prior, "prior", **kw), load_kandinsky_pipeline(decoder, "decoder", **kw)
    )
