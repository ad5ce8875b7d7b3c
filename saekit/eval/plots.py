"""Evaluation figure: L0 and FVU over training (from train_log.jsonl) and the latent-density histogram."""

from __future__ import annotations

from pathlib import Path

import torch


def eval_png(path: str | Path, density, log_records: list[dict] | None = None, title: str = "") -> Path:
    """Write a 3-panel PNG (FVU curve, L0 curve, log10 density histogram) atomically; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saekit.atomic import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_fvu, ax_l0, ax_den = axes
    if log_records:
        tokens = [r["tokens"] for r in log_records]
        ax_fvu.plot(tokens, [r["fvu"] for r in log_records], color="tab:blue")
        ax_fvu.set_yscale("log")
        ax_l0.plot(tokens, [r["l0"] for r in log_records], color="tab:orange", label="L0")
        ax_dead = ax_l0.twinx()
        ax_dead.plot(tokens, [r["dead_pct"] for r in log_records], color="tab:red", ls="--", label="dead %")
        ax_dead.set_ylabel("dead latents (%)", color="tab:red")
        ax_l0.legend(loc="upper left", fontsize=9)
        ax_dead.legend(loc="upper right", fontsize=9)
    else:
        for ax in (ax_fvu, ax_l0):
            ax.text(
                0.5,
                0.5,
                "no train_log.jsonl next to the SAE",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
    ax_fvu.set(title="FVU (centred) during training", xlabel="tokens", ylabel="FVU (batch)")
    ax_l0.set(title="L0 during training", xlabel="tokens", ylabel="active latents per token")
    dens = torch.as_tensor(density).float()
    alive = dens[dens > 0]
    n_dead = int((dens == 0).sum())
    if alive.numel():
        ax_den.hist(alive.log10().numpy(), bins=50, color="tab:green")
    ax_den.set(
        title=f"held-out latent density ({n_dead}/{dens.numel()} never fired)",
        xlabel="log10(fraction of tokens where the latent fires)",
        ylabel="latents",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
