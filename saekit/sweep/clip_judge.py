"""A CLIP judge for steered images: what judges a sweep on a real generator (FLUX.1) with no factor judges.

- **concept**: did the image move toward what the steering wanted? The margin
  `cos(image, text wanted) - cos(image, text asked)` between the description of the target (for the
  testbed: the caption with the factor set to the target; for FLUX.1: "a red car") and the prompt as it
  was asked (or a neutral description). A margin above 0 counts as carried.
- **preservation**: did the rest stay? CLIP image similarity to the unsteered image of the same seed,
  and SSIM (pixels).

Any CLIP folder or hub id that `CLIPModel.from_pretrained` reads works; `saekit.testbed.fluxbed.clip`
trains one on the testbed's own renders, so the two judges can be compared on the same sweep
(`rank_agreement`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from saekit.errors import ModelLoadError


class ClipJudge:
    """CLIP scores of images `[N, 3, H, W]` in [0, 1] (see the module docstring)."""

    def __init__(self, model: str, device: str = "cpu"):
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(model).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.processor = CLIPImageProcessor.from_pretrained(model)
        except OSError as exc:
            raise ModelLoadError(
                f"CLIP judge {model!r}: {exc}. Give a local CLIP folder (config.json, weights, tokenizer, "
                "preprocessor_config.json) or a hub id on a machine with internet"
            ) from exc
        self.device = device
        self._text_cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def image_embeds(self, images: Tensor) -> Tensor:
        """Unit CLIP image embeddings `[N, D]`."""
        arrays = [im.clamp(0, 1).permute(1, 2, 0).cpu().numpy() for im in images.float()]
        pix = self.processor(images=arrays, do_rescale=False, return_tensors="pt")["pixel_values"]
        e = self.model.get_image_features(pixel_values=pix.to(self.device))
        e = e if isinstance(e, Tensor) else e.pooler_output
        return torch.nn.functional.normalize(e.float(), dim=-1).cpu()

    @torch.no_grad()
    def text_embeds(self, texts: Sequence[str]) -> Tensor:
        """Unit CLIP text embeddings `[T, D]` (cached per text)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if todo:
            enc = self.tokenizer(list(todo), padding=True, truncation=True, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            e = self.model.get_text_features(**enc)
            e = e if isinstance(e, Tensor) else e.pooler_output
            for t, v in zip(todo, torch.nn.functional.normalize(e.float(), dim=-1).cpu(), strict=True):
                self._text_cache[t] = v
        return torch.stack([self._text_cache[t] for t in texts])

    def concept_margin(self, images: Tensor, wanted: Sequence[str], asked: Sequence[str]) -> np.ndarray:
        """Per image: `cos(image, wanted_i) - cos(image, asked_i)`."""
        img = self.image_embeds(images)
        return ((img * self.text_embeds(wanted)).sum(-1) - (img * self.text_embeds(asked)).sum(-1)).numpy()

    def similarity(self, a: Tensor, b: Tensor) -> np.ndarray:
        """Per pair: CLIP image-embedding cosine of `a_i` and `b_i`."""
        return (self.image_embeds(a) * self.image_embeds(b)).sum(-1).numpy()


def ssim(a: Tensor, b: Tensor) -> np.ndarray:
    """Per pair: SSIM of two images in [0, 1] (colour, scikit-image's windowed SSIM)."""
    from skimage.metrics import structural_similarity

    out = []
    for x, y in zip(a.float().cpu().numpy(), b.float().cpu().numpy(), strict=True):
        side = min(x.shape[1:])
        win = min(7, side if side % 2 else side - 1)
        out.append(structural_similarity(x, y, channel_axis=0, data_range=1.0, win_size=win))
    return np.asarray(out)


def rank_agreement(a: Sequence[float], b: Sequence[float]) -> dict:
    """Spearman rank correlation of two judges' scores over the same configurations, with its p-value
    and a 95% bootstrap interval over configurations."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, float), np.asarray(b, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"spearman": float("nan"), "p": float("nan"), "ci": (float("nan"), float("nan")), "n": len(x)}
    r, p = spearmanr(x, y)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(2000):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(spearmanr(x[i], y[i])[0])
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots else (float("nan"), float("nan"))
    return {"spearman": float(r), "p": float(p), "ci": (float(lo), float(hi)), "n": len(x)}
