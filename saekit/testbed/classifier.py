"""A small MLP digit classifier: the judge of steering success and confidence."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DigitClassifier(nn.Module):
    """`[B, 8, 8]` in [-1, 1] -> logits `[B, 10]`."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.GELU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, 10),
        )

    def forward(self, img_BHW: Tensor) -> Tensor:
        return self.net(img_BHW)


def augment(img_BHW: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts by up to one pixel plus a little noise: makes the judge robust to generated digits."""
    B = img_BHW.shape[0]
    padded = torch.nn.functional.pad(img_BHW, (1, 1, 1, 1), value=-1.0)
    dx = torch.randint(0, 3, (B,), generator=generator)
    dy = torch.randint(0, 3, (B,), generator=generator)
    rows = (torch.arange(8)[None, :] + dy[:, None])[:, :, None].expand(B, 8, 8)
    cols = (torch.arange(8)[None, :] + dx[:, None])[:, None, :].expand(B, 8, 8)
    out = padded[torch.arange(B)[:, None, None], rows, cols]
    return out + 0.1 * torch.randn(out.shape, generator=generator)


@torch.no_grad()
def accuracy(clf: DigitClassifier, x_BHW: Tensor, y_B: Tensor) -> float:
    clf.eval()
    return float((clf(x_BHW).argmax(-1) == y_B).float().mean())
