"""Which TopK training encoder runs: exact fp32, or a bf16 / int8 / fp16 screen, chosen by timing.

The screen (`saekit.sae.screened`) pays only where its cheap matmul plus the exact re-score beats one
fp32 GEMM of the encoder, and that depends on the machine, not on its CPU flags: on an AMX Xeon the bf16
screen wins, on an AVX-512 EPYC with native bf16 but no AMX the int8 screen did (2.6x sparsify at batch
4096 where `auto` used to pick exact), and with bf16 emulated (AVX2) a bf16 screen is ~5x slower than
exact. `auto` therefore times the selection step of every candidate at the run's own shapes (the
backward is the same sparse one for all of them) and takes a screen only when it is clearly faster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from saekit.errors import SAEConfigError
from saekit.probe import cached_figures, machine_key, time_candidates_ms
from saekit.sae.screened import Screener, int8_matmul_available, latent_major_

#: every encoder path, as `--encoder` names them ("auto" and "screened" resolve to one of these)
PATHS = ("exact", "screened-bf16", "screened-int8", "screened-fp16")
#: the screen backend (`Screener(backend=...)`) of each screened path
BACKENDS = {"screened-bf16": "bfloat16", "screened-int8": "int8", "screened-fp16": "float16"}
#: a screen must be at least this much faster than exact for `auto` to take it (timing noise on a
#: shared machine is a few percent; a tie is not worth the screen's approximation)
MIN_GAIN = 0.10
#: below this many encoder weights the matmul is too small for screening to pay for its overheads
MIN_SCREEN_WEIGHTS = 2**21


@dataclass(frozen=True)
class EncoderChoice:
    """The resolved encoder path, and the timings it was chosen from (empty when nothing was timed)."""

    path: str
    times_ms: dict[str, float]
    reason: str
    cached: bool = False

    @property
    def backend(self) -> str | None:
        return BACKENDS.get(self.path)

    def describe(self) -> str:
        figures = ", ".join(f"{p} {t:.1f} ms" for p, t in sorted(self.times_ms.items(), key=lambda i: i[1]))
        timed = f" (selection step: {figures}{'; cached probe' if self.cached else ''})" if figures else ""
        return f"encoder {self.path}: {self.reason}{timed}"

    def to_dict(self) -> dict:
        return {"path": self.path, "times_ms": self.times_ms, "reason": self.reason, "cached": self.cached}


def choose(times_ms: dict[str, float], min_gain: float = MIN_GAIN) -> str:
    """The path `auto` runs, from measured selection times: the fastest screen if it beats exact by at
    least `min_gain` (relative), else exact. Pure, so the rule is tested with made-up timings."""
    if "exact" not in times_ms:
        raise SAEConfigError("the encoder probe needs an exact timing to compare the screens with")
    screens = {p: t for p, t in times_ms.items() if p != "exact"}
    if not screens:
        return "exact"
    best = min(screens, key=screens.__getitem__)
    return best if screens[best] <= (1.0 - min_gain) * times_ms["exact"] else "exact"


def fastest_screen(times_ms: dict[str, float]) -> str:
    """The quickest screened path (for `--encoder screened` without a backend)."""
    screens = {p: t for p, t in times_ms.items() if p != "exact"}
    if not screens:
        raise SAEConfigError("no screen backend runs on this device (no int8, bf16 or fp16 matmul)")
    return min(screens, key=screens.__getitem__)


def candidate_paths(device: torch.device) -> list[str]:
    """The paths that can run on `device` (int8 needs `torch._int_mm`; fp16 screens only on CUDA)."""
    paths = ["exact", "screened-bf16"]
    if int8_matmul_available(device):
        paths.append("screened-int8")
    if device.type == "cuda":
        paths.append("screened-fp16")
    return paths


def time_selection(
    d_in: int, d_sae: int, k: int, batch: int, device: torch.device, paths: list[str]
) -> dict[str, float]:
    """Milliseconds of one latent selection (the forward's encoder part) for each path, on random
    weights of the run's shapes in the latent-major layout training uses."""
    from saekit.sae.screened_topk import select_latents

    g = torch.Generator(device="cpu").manual_seed(0)
    W = (torch.randn(d_sae, d_in, generator=g) / d_in**0.5).to(device).T  # latent-major [d_in, d_sae]
    b = torch.zeros(d_sae, device=device)
    x = torch.randn(batch, d_in, generator=g).to(device)
    fns = {}
    for path in paths:
        enc = None if path == "exact" else Screener(backend=BACKENDS[path], check_rows=32)
        fns[path] = lambda enc=enc: select_latents(x, W, b, k, None, 0, enc)
    with torch.no_grad():
        return time_candidates_ms(fns, device)


Probe = Callable[[int, int, int, int, torch.device, list[str]], dict[str, float]]


def resolve(
    mode: str, sae, batch: int | None, *, probe: Probe = time_selection, use_cache: bool = True
) -> EncoderChoice:
    """The encoder path for `mode` (auto | exact | screened | one of PATHS) for this SAE and batch."""
    if mode not in ("auto", "screened", *PATHS):
        raise SAEConfigError(f"encoder {mode!r}: choose one of auto, screened, {', '.join(PATHS)}")
    if not sae.sparse_training:
        if mode not in ("auto", "exact"):
            raise SAEConfigError(
                f"--encoder {mode} is for topk SAEs (the sparse kernels); this one is {sae.arch!r}"
            )
        return EncoderChoice("exact", {}, f"{sae.arch} SAEs train with the exact encoder")
    if mode == "exact" or mode in BACKENDS:
        return EncoderChoice(mode, {}, "as asked (--encoder)")
    dev = sae.device
    friendly = sae.d_in % 8 == 0 and sae.d_sae % 8 == 0
    if mode == "auto" and (sae.d_in * sae.d_sae < MIN_SCREEN_WEIGHTS or not friendly):
        return EncoderChoice("exact", {}, "too small (or not a multiple of 8) for a screen to pay")
    rows = int(batch or 1024)
    paths = candidate_paths(dev)
    key = f"{machine_key(dev)}|d_in {sae.d_in}|d_sae {sae.d_sae}|k {sae.k}|batch {rows}|{','.join(paths)}"

    def measure() -> dict[str, float]:
        return probe(sae.d_in, sae.d_sae, sae.k, rows, dev, paths)

    if use_cache:
        times, cached = cached_figures("encoder", key, measure)
    else:
        times, cached = measure(), False
    if mode == "screened":
        return EncoderChoice(fastest_screen(times), times, "the fastest screen measured here", cached)
    path = choose(times)
    why = "measured fastest" if path != "exact" else f"no screen was {100 * MIN_GAIN:.0f}% faster here"
    return EncoderChoice(path, times, why, cached)


def configure_encoder(sae, mode="auto", batch: int | None = None, **screen_kw) -> Screener | None:
    """Prepare a TopK SAE's encoder for training: resolve `mode` (a `--encoder` value, or an
    `EncoderChoice` already made) for this SAE, device and per-rank `batch` (`encoder_choice.resolve`,
    which may time the candidates), attach the Screener (also `sae.screen`) or None, and keep the
    decision on `sae.encoder_choice` for the run's summary and checkpoint."""
    choice = mode if isinstance(mode, EncoderChoice) else resolve(mode, sae, batch)
    if sae.sparse_training:
        latent_major_(sae)
    sae.screen = Screener(backend=choice.backend, **screen_kw) if choice.backend else None
    sae.encoder_choice = choice
    return sae.screen
