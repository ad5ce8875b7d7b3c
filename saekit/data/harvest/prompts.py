"""Where diffusion prompts come from: a text / caption file, repeated --prompt flags, an `hf:` dataset
(e.g. CC3M captions, for users with internet), or precomputed prompt embeddings (pipelines saved
without text encoders, like the tiny test pipeline)."""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.errors import CorpusError, ShapeError

T5_TEXT_LEN = 512
"""FluxPipeline pads the T5 prompt to max_sequence_length=512 tokens."""


def read_prompt_file(spec: str, limit: int = 0) -> list[str]:
    """One prompt per line (.txt), or the caption column of a .jsonl / .csv file."""
    path = Path(spec)
    if not path.is_file():
        raise CorpusError(f"--prompts {spec} does not exist; give a text file with one prompt per line")
    if path.suffix.lower() in (".jsonl", ".csv"):
        from saekit.data.images import load_captions

        lines = load_captions(path)
    else:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise CorpusError(f"--prompts {spec} holds no prompts")
    return lines[:limit] if limit else lines


def read_hf_prompts(spec: str, limit: int) -> list[str]:
    """`hf:DATASET[:SPLIT][#COLUMN]`, streamed, first `limit` rows (needs `datasets` and internet)."""
    name = spec.removeprefix("hf:")
    name, _, column = name.partition("#")
    name, _, split = name.partition(":")
    if limit < 1:
        raise CorpusError(f"--prompts {spec}: give --num-prompts N (a dataset can hold millions of captions)")
    try:
        import datasets
    except ImportError as exc:
        raise CorpusError(f"--prompts {spec} needs the `datasets` package: pip install datasets") from exc
    try:
        rows = datasets.load_dataset(name, split=split or "train", streaming=True)
        out = []
        for row in rows:
            key = column or next((k for k in ("caption", "text", "prompt") if k in row), None)
            if key is None or key not in row:
                raise CorpusError(
                    f"--prompts {spec}: no caption/text/prompt column; add #COLUMN (found {list(row)})"
                )
            out.append(str(row[key]))
            if len(out) == limit:
                break
    except CorpusError:
        raise
    except Exception as exc:
        raise CorpusError(
            f"--prompts {spec}: cannot stream the dataset ({exc}); check the name and your connection, "
            "or save the captions to a local file"
        ) from exc
    return out


def read_embeds(path: Path) -> list[dict[str, torch.Tensor]]:
    """Per-image `{prompt_embeds [1, T, d], pooled_prompt_embeds [1, d]}` from one .safetensors file."""
    from safetensors.torch import load_file

    try:
        t = load_file(str(path))
    except Exception as exc:
        raise CorpusError(f"cannot read --prompt-embeds {path}: {exc}; give a .safetensors file") from exc
    if "prompt_embeds" not in t or "pooled_prompt_embeds" not in t:
        raise CorpusError(
            f"{path} must hold prompt_embeds [N, T, d] and pooled_prompt_embeds [N, d]; found {sorted(t)}"
        )
    pe, pooled = t["prompt_embeds"], t["pooled_prompt_embeds"]
    if pe.ndim != 3 or pooled.ndim != 2 or pe.shape[0] != pooled.shape[0]:
        raise ShapeError(
            f"{path}: prompt_embeds {list(pe.shape)} / pooled_prompt_embeds {list(pooled.shape)} "
            "must be [N, T, d] / [N, d] with the same N"
        )
    return [
        {"prompt_embeds": pe[i : i + 1], "pooled_prompt_embeds": pooled[i : i + 1]}
        for i in range(pe.shape[0])
    ]


def merge_inputs(items: list[dict]) -> dict:
    """Per-image conditioning -> the pipeline's batched keyword arguments."""
    if "prompt" in items[0]:
        return {"prompt": [i["prompt"] for i in items]}
    return {k: torch.cat([i[k] for i in items]) for k in items[0]}
