"""The analysis JSON document: everything `analyze real|synthetic|compare` found, in one file.

Designed for a later static HTML feature browser: one top-level `features` map keyed by feature index
(as a string, JSON keys must be), each entry self-contained (stats, histogram, top examples with
context tokens and per-token activations, logit effects, synthetic results, comparison), plus
`all_features` arrays (frequency, mean, max for every feature) for overview plots and search.
Token strings are stored raw (not escaped): escaping belongs to whatever renders them.

Schema (version 1):
  schema_version, format="saekit.analysis", sae{path, arch, d_in, d_sae, k, provenance},
  source{kind, path, model, hook_point, n_rows}, config{...},
  summary{n_rows, n_features, n_dead, dead_features[], n_selected, sketch_alpha},
  all_features{frequency[], mean_when_active[] (null = never fired), max[]},
  features{"<j>": {index, stats{count, frequency, mean_when_active, max, quantiles{"0.5": v}},
                   histogram{edges[], counts[]}, top_examples[{activation, row, doc_id, position,
                   token_id, token, context{tokens[], token_ids[], activations[], focus}}],
                   logit_effects{promoted[{token_id, token, effect}], suppressed[...]} | null,
                   synthetic{... sequences[{..., start, start_activation, n_edited}]} | absent,
                   comparison{...} | absent}}
Image stores (no tokens; additive fields, see image_report.py): top_examples entries have no
token_id/token, `context: null`, and `step`/`timestep` for diffusion; features add `top_images`,
`image_grid`, `heatmaps`, `timestep_plot` and (diffusion) `timesteps`. A model + corpus source has
source{kind: "corpus", corpus, path: null}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from saekit.atomic import write_json_atomic
from saekit.errors import SaekitError

SCHEMA_VERSION = 1
FORMAT = "saekit.analysis"
FILE_NAME = "analysis.json"


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN/inf; missing values are null."""
    x = float(x)
    return x if math.isfinite(x) else None


def new_document(sae_info: dict, source: dict, config: dict) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "sae": sae_info,
        "source": source,
        "config": config,
        "summary": {},
        "all_features": {},
        "features": {},
    }


def sae_info(sae, path: str | None) -> dict:
    cfg = sae.cfg.to_dict()
    return {
        "path": path,
        "arch": sae.arch,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "k": cfg.get("k"),
        "provenance": cfg.get("provenance"),
    }


def save(doc: dict, folder: str | Path) -> Path:
    path = Path(folder) / FILE_NAME
    write_json_atomic(path, doc)
    return path


def load(folder: str | Path) -> dict:
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        raise SaekitError(
            f"no {FILE_NAME} in {folder}; run `saekit analyze real` (or synthetic) with --out {folder} first"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SaekitError(f"{path} is not valid JSON ({exc}); delete it and re-run the analysis") from None
    if doc.get("format") != FORMAT or not isinstance(doc.get("schema_version"), int):
        raise SaekitError(f"{path} is not a saekit analysis document (format={doc.get('format')!r})")
    if doc["schema_version"] > SCHEMA_VERSION:
        raise SaekitError(
            f"{path} has schema_version {doc['schema_version']}, newer than this saekit "
            f"({SCHEMA_VERSION}); upgrade saekit"
        )
    return doc


def token_text(tokenizer, token_id: int) -> str:
    """Raw text of one token (no escaping); `#id` when no tokenizer is known."""
    if tokenizer is None:
        return f"#{token_id}"
    try:
        return tokenizer.decode([int(token_id)])
    except Exception:  # noqa: BLE001 - a tokenizer that cannot decode an id must not kill the report
        return f"#{token_id}"


def synthetic_entry(result, cfg, tokenizer, real_max: float | None) -> dict:
    """JSON form of a `SyntheticResult` (see synthetic.py)."""
    import dataclasses

    seqs = []
    for s in result.sequences:
        toks = [token_text(tokenizer, t) for t in s.token_ids]
        seqs.append(
            {
                "token_ids": s.token_ids,
                "tokens": toks,
                "text": tokenizer.decode(s.token_ids) if tokenizer is not None else " ".join(toks),
                "activation": s.activation,
                "pre_activation": s.pre_activation,
                "ce": finite_or_none(s.ce),
                "perplexity": finite_or_none(s.perplexity),
                "ratio_to_real_max": s.activation / real_max if real_max else None,
                "restart": s.restart,
                "start": s.start,
                "start_activation": s.start_activation,
                "n_edited": s.n_edited,
            }
        )
    conf = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "quiet"}
    return {
        "config": conf,
        "real_max": real_max,
        "sequences": seqs,
        "trajectories": result.trajectories,
        "random_activations": result.random_activations,
        "objective": "SAE pre-activation of the feature at the last token; fluency = model CE (nats/token)",
    }
