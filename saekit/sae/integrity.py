"""The SAE folder's weights and config.json as one unit: size, sha256 and a per-save pair token.

`save_sae` writes the weights (atomically) and then config.json (atomically) recording the weights'
size, sha256 and a random token that the weights' safetensors metadata also holds. A crash between
the two writes leaves new weights beside the old config (token and size disagree), a truncated copy
has the wrong size, and bytes overwritten in place change the sha256: each is refused on open with
what to do. Old folders without the record are accepted unchecked.

`check_loaded` is the last step of every load, native or converted: finite weights in the SAE's dtype, a
positive input scale, and finite latents and reconstructions for a few probe rows.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch

from saekit.errors import SAEFormatError

#: Weights files up to this size are hashed on every open (~0.1-0.3 s per 100 MB); larger ones only by
#: `verify_folder` (`saekit info --verify`), so opening a multi-GB SAE stays fast.
HASH_ON_OPEN_BYTES = 512 * 2**20
FIX = "re-save the SAE (or re-copy / re-download the whole folder)"


def file_sha256(path: Path) -> str:
    """Streaming sha256 of a file (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def weights_record(blob: bytes) -> dict[str, Any]:
    """What config.json records about a weights file written from `blob`."""
    return {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def _pair_token(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("pair")
    except Exception:  # unreadable header: the loader's own read names the corruption
        return None


def check_pair(folder: Path, raw: dict[str, Any], name: str, *, full: bool = False) -> dict[str, Any]:
    """Check `folder/name` against the record in config.json `raw`; returns what was checked.

    Always: size and pair token. The sha256 when `full` or the file is at most HASH_ON_OPEN_BYTES.
    """
    path = folder / name
    record = (raw.get("files") or {}).get(name)
    if record is None:
        return {"file": name, "recorded": False}
    if not path.exists():
        raise SAEFormatError(f"missing weights file {path} (config.json records it); {FIX}")
    size = path.stat().st_size
    if size != record.get("size"):
        raise SAEFormatError(
            f"{path} ({size} bytes) does not match config.json, which recorded {record.get('size')} bytes: "
            "the file is corrupt or truncated, or from a different save (an interrupted save or copy?); "
            f"{FIX}"
        )
    token = raw.get("pair")
    found = _pair_token(path)
    if token is not None and found is not None and token != found:
        raise SAEFormatError(
            f"{path} and {folder / 'config.json'} come from two different saves (pair token {found} vs "
            f"{token}): a save was interrupted between the two files; {FIX}"
        )
    hashed = full or size <= HASH_ON_OPEN_BYTES
    if hashed:
        digest = file_sha256(path)
        if digest != record.get("sha256"):
            raise SAEFormatError(
                f"{path} has sha256 {digest[:16]}... but config.json recorded "
                f"{str(record.get('sha256'))[:16]}...: "
                f"its bytes changed after saving (corrupted or overwritten in place); {FIX}"
            )
    return {"file": name, "recorded": True, "size": size, "sha256_checked": hashed}


#: The load-time probe's rows. In the SAE's normalised units (the input scale undone to make them raw): the
#: decoder bias plus 4x unit noise, plus 4 on every coordinate and plus alternating +-4 (so that every
#: encoder weight meets a sizeable input). In raw units: zeros (every weight then meets b_dec), and 4x unit
#: noise (activations near scale 1, whatever the SAE's input scale claims).
PROBE_ROWS = (
    "b_dec + 4x unit noise",
    "b_dec + 4 on every coordinate",
    "b_dec + alternating +-4",
    "a zero row",
    "raw 4x unit noise",
)


def _probe_rows(sae) -> torch.Tensor:
    """`PROBE_ROWS` as raw activations `[5, d_in]` (float32, CPU; `encode` casts them to the SAE dtype)."""
    d_in = sae.d_in
    noise_ND = 4 * torch.randn(2, d_in, generator=torch.Generator().manual_seed(0))
    alternating_D = 4.0 - 8.0 * (torch.arange(d_in) % 2)
    # the encoder's centre: b_dec, or zero for a transcoder (whose b_dec lives in the output's space)
    b_dec_D = torch.zeros(d_in) if sae.cfg.transcode else sae.b_dec.detach().to("cpu", torch.float32)
    normalised_ND = b_dec_D + torch.stack([noise_ND[0], torch.full((d_in,), 4.0), alternating_D])
    if sae.cfg.normalization != "layer_norm":  # layer_norm standardises each row: no constant to undo
        normalised_ND = normalised_ND / float(sae.input_scale)
    return torch.cat([normalised_ND, torch.zeros(1, d_in), noise_ND[1:]])


def _headroom(t: torch.Tensor) -> float | None:
    """Largest magnitude a weight of `t`'s dtype may hold: sqrt of the dtype's maximum, so the product of
    two weights stays finite; None for float16, whose range is too narrow to reserve (the probe checks it)."""
    info = torch.finfo(t.dtype)
    return None if info.max < torch.finfo(torch.float32).max else math.sqrt(info.max)


def _largest(sae) -> str:
    """`|name| = value` of the floating tensor holding the largest magnitude (for overflow messages)."""
    peaks = {n: t.detach().abs().amax().item() for n, t in sae.state_dict().items() if t.numel()}
    name = max(peaks, key=lambda n: peaks[n])
    return f"|{name}| = {peaks[name]:.3g}"


def _check_tensor(sae, name: str, t: torch.Tensor, source: Path) -> None:
    """Finite, and (in a wide dtype) within `_headroom`: one min/max pass, the slow path only on failure."""
    if not t.numel():
        return
    lo, hi = (float(v) for v in t.detach().aminmax())  # NaN anywhere makes both NaN
    if math.isfinite(lo) and math.isfinite(hi):
        peak, limit = max(-lo, hi), _headroom(t)
        if limit is not None and peak > limit:
            raise SAEFormatError(
                f"{source}: tensor {name!r} holds a value of magnitude {peak:.3g}, beyond {limit:.3g} (the "
                f"square root of {t.dtype}'s maximum, where the product of two weights overflows); no "
                "trained SAE has weights this large. The file is corrupt (a flipped exponent bit?) or was "
                "scaled wrongly — re-download or re-export the SAE"
            )
        return
    bad = ~torch.isfinite(t)
    where = ""
    if t.ndim:
        rows = bad.reshape(t.shape[0], -1).any(-1).nonzero().flatten()
        where = f" (first in row {int(rows[0])} of {t.shape[0]})"
    renamed = " (saekit's name for it after conversion)" if sae.cfg.provenance.source_format else ""
    raise SAEFormatError(
        f"{source}: tensor {name!r}{renamed} has {int(bad.sum())} NaN/inf value(s) as {t.dtype}{where}: "
        f"the file holds NaN/inf, values beyond {t.dtype}'s range (±{torch.finfo(t.dtype).max:.3g}), or a "
        "zero-norm decoder row that the format divides by. The weights are corrupt — re-download or "
        "re-export the SAE (in float32 if it was saved in float16)"
    )


def check_loaded(sae, source: Path) -> None:
    """Refuse a just-loaded SAE whose weights, latents or reconstructions are not finite numbers.

    Every load (native or converted) ends here with the module in its own dtype, so the checks see values
    that only overflow after the final cast (float32 weights past float16's range) and, by encoding and
    decoding `PROBE_ROWS`, weights finite on their own whose products overflow: the cases that would
    otherwise hand back an SAE answering ±inf without a word. In float32/bfloat16/float64 a weight beyond
    the square root of the dtype's maximum is refused outright (no trained SAE comes near it, and a probe
    could miss the one input coordinate that meets it). Costs a min/max pass over the weights and a 5-row
    encode/decode.
    """
    with torch.no_grad():
        for name, t in sae.state_dict().items():
            _check_tensor(sae, name, t, source)
        scale, limit = float(sae.input_scale), math.sqrt(torch.finfo(torch.float32).max)
        if not 1 / limit <= scale:  # the float32 buffer's upper bound is the magnitude check's
            raise SAEFormatError(
                f"{source}: input_scale is {scale:g}; it multiplies raw activations before encoding, so it "
                f"must be a positive number of at least {1 / limit:.3g} (below that, raw activations of the "
                "SAE's scale would overflow) — the file or the scaling factor given is wrong"
            )
        rows_ND = _probe_rows(sae)
        latents_NF = sae.encode(rows_ND)
        _check_output(sae, "latents", latents_NF, source)
        _check_output(sae, "reconstructions", sae.decode(latents_NF, rows_ND), source)


def _check_output(sae, what: str, out_N: torch.Tensor, source: Path) -> None:
    bad_N = ~out_N.isfinite().reshape(len(PROBE_ROWS), -1).all(-1)
    if not bad_N.any():
        return
    raise SAEFormatError(
        f"{source}: the loaded SAE gives NaN/inf {what} for {PROBE_ROWS[int(bad_N.nonzero()[0])]} (one of "
        "a few activation-like rows encoded at load time) although every weight is finite: the "
        f"weights are too large for {sae.dtype} arithmetic (largest {_largest(sae)}). The file is corrupt or "
        "was scaled wrongly — re-download or re-export the SAE (in float32 if it was saved in float16)"
    )
