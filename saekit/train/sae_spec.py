"""`SAESpec`: the trainable fields of `SAEConfig`, derived from it so the two can never drift.

`SAEConfig` needs `d_in` and `d_sae`, which a training run learns from the activation store, so the
CLI cannot hold an `SAEConfig` directly. `SAESpec` is generated from `SAEConfig`'s own fields (types,
defaults and docstrings) minus the sizes and the provenance; `TrainConfig` nests it (the way sparsify
nests `SparseCoderConfig` in its `TrainConfig`). A field added to `SAEConfig` becomes a `saekit train`
flag with no edit here.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from typing import Annotated, Any, Literal

import tyro

from saekit.sae.config import SAEConfig
from saekit.sae.registry import architectures

#: SAEConfig fields a training run fills in itself (sizes from the store, provenance from its manifest,
#: `transcode` / `d_out` from `--target out` and the paired store).
RUN_FIELDS = ("d_in", "d_sae", "provenance", "transcode", "d_out")

#: SAEConfig fields that describe imported SAEs only (none at present: `skip_connection` trains, for
#: transcoders).
IMPORT_ONLY: tuple[str, ...] = ()

#: Extra spellings of SAE flags (sparsify's `--skip` for skip transcoders).
ALIASES = {"skip_connection": ("--skip",)}


#: CLI choices for --arch, read from the architecture registry (one source of truth).
ArchName = Literal[tuple(architectures())]


def _type_overrides() -> dict[str, Any]:
    """Narrower CLI types than SAEConfig's: --arch lists the registry; `layer_norm` is import-only."""
    return {"arch": ArchName, "normalization": Literal["none", "expected_norm"]}


#: Defaults that differ for training from SAEConfig's (which describe a bare, unnormalised SAE).
#: `init_encoder_scale` 1/sqrt(3): the encoder starts at the row norm of sparsify's nn.Linear init, so
#: Adam's fixed-size steps move it 1.7x faster relative to its size; on SmolLM2 layer 15 this alone closed
#: the FVU gap to sparsify (docs/results/fvu_vs_sparsify.md; pinned by tests/train/test_fvu_defaults.py).
TRAIN_DEFAULTS: dict[str, Any] = {"k": 32, "normalization": "expected_norm", "init_encoder_scale": 3**-0.5}


def field_docstrings(cls: type) -> dict[str, str]:
    """`{field: docstring}` from the string literal under each annotated field of a class body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def _spec_fields() -> list[tuple[str, Any, Any]]:
    hints = {**typing.get_type_hints(SAEConfig), **_type_overrides()}
    docs = field_docstrings(SAEConfig)
    out = []
    for f in dataclasses.fields(SAEConfig):
        if f.name in RUN_FIELDS + IMPORT_ONLY:
            continue
        default = TRAIN_DEFAULTS.get(f.name, f.default)
        arg = tyro.conf.arg(help=docs.get(f.name, ""), aliases=ALIASES.get(f.name))
        hint = Annotated[hints[f.name], arg]
        out.append((f.name, hint, dataclasses.field(default=default)))
    return out


SAESpec = dataclasses.make_dataclass("SAESpec", _spec_fields(), frozen=True)
SAESpec.__module__ = __name__
SAESpec.__doc__ = (
    "SAE architecture and initialisation (SAEConfig without sizes, provenance, import-only fields)."
)


def spec_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(SAESpec))


def to_sae_config(
    spec: Any, d_in: int, d_sae: int, provenance: Any = None, *, d_out: int | None = None
) -> SAEConfig:
    """The full `SAEConfig` once the sizes are known; `d_out` (a paired store's target width) makes it a
    transcoder."""
    extra: dict[str, Any] = {} if provenance is None else {"provenance": provenance}
    if d_out is not None:
        extra.update(transcode=True, d_out=d_out if d_out != d_in else None)
    return SAEConfig(d_in=d_in, d_sae=d_sae, **dataclasses.asdict(spec), **extra)


def check_spec(spec: Any, transcode: bool = False) -> None:
    """Validate with SAEConfig's own checks (smallest sizes that admit the spec's k)."""
    sizes = getattr(spec, "matryoshka", None) or ()
    to_sae_config(spec, d_in=1, d_sae=max(1, spec.k or 1, *sizes), d_out=1 if transcode else None)
