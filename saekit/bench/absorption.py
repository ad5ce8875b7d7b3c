"""Feature absorption (Chanin et al. 2024) on first-letter identification, as SAEBench scores it.

Words: tokens of the model's own vocabulary that are a space and a lowercase word (`vocabulary_words`),
each fed after a short fixed prefix (the BOS token by default), the activation taken at the word. A
multinomial logistic regression on those activations (training words) gives each letter a probe
direction `p_L` (unit, in raw activation space). Per SAE:

- **main latents** of letter L: the candidate latents are the `candidates` whose decoder direction (or
  encoder, `--absorption.direction encoder`) has the highest cosine with `p_L`. The top one is the main
  latent; more join while one more raises the F1 of "a main latent fires -> the word starts with L" on
  the training words by at least `split_f1_gain` (at most `max_split`). Their number is the letter's
  **split** count (SAEBench's feature splitting, with the candidates ranked by cosine).
- **absorption**, on held-out words of letter L that the probe classifies correctly: every main latent
  is silent, yet the latent contributing most along `p_L` (activation x decoder . p_L, in raw units)
  has a cosine of at least `cos_threshold` with `p_L` and carries at least `projection_share` of the
  word's own projection `(x - decode(0)) . p_L` (which must be positive). SAEBench's full-absorption
  rule, with the projection taken from the decoder bias rather than from the origin.

Reported: the absorption rate (mean over letters of each letter's rate; interval: words resampled within
each letter), the main-miss rate (main latents silent, absorbed or not: absorption's upper bound), the
mean number of split latents (interval: letters resampled) and the probe's accuracy (a property of the
model, not of the SAE).
"""

from __future__ import annotations

import string
import warnings
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from saekit.bench.bootstrap import Interval, bootstrap, mean_of_strata, mean_stat
from saekit.errors import SAEConfigError


@dataclass(frozen=True)
class AbsorptionConfig:
    """First-letter absorption (`--absorption.*`)."""

    max_words: int = 6000
    """Words sampled from the vocabulary (0 = all)."""
    min_letters: int = 2
    """Shortest word kept (letters after the space)."""
    test_fraction: float = 0.2
    """Held-out words (the probe and the main latents never see them)."""
    prefix: str = "bos"
    """What precedes each word: `bos` (the tokenizer's BOS token), `` (nothing: the word then sits on the
    attention sink of models that have one) or any text."""
    direction: Literal["decoder", "encoder"] = "decoder"
    """Which latent direction is compared with the probe to find the main latents."""
    candidates: int = 10
    """Latents with the highest cosine considered as main latents of a letter."""
    split_f1_gain: float = 0.03
    """F1 gain on training words for one more latent to count as a split of the letter."""
    max_split: int = 5
    """Most main latents per letter."""
    cos_threshold: float = 0.025
    """Least cosine between an absorbing latent's decoder and the probe (SAEBench's value)."""
    projection_share: float = 0.4
    """Least share of the word's probe projection the absorbing latent must carry (SAEBench's value)."""
    c: float = 1.0
    """Inverse L2 strength of the letter probe (scikit-learn's C) on standardised activations."""
    batch_size: int = 512
    """Words per forward pass."""
    seed: int = 0
    """Seed of the word sample and split."""

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1 or self.candidates < 1 or self.max_split < 1:
            raise SAEConfigError(
                "absorption: --absorption.test-fraction must be in (0, 1) and --absorption.candidates and "
                f"--absorption.max-split positive (got {self.test_fraction}, {self.candidates}, "
                f"{self.max_split})"
            )


class LetterProbe(NamedTuple):
    """The SAE-independent part: word activations, the letter probe and its directions."""

    x_train: Tensor
    """`[n, d]` activations of the training words (raw units)."""
    y_train: Tensor
    """`[n]` first letter 0..25."""
    x_test: Tensor
    y_test: Tensor
    direction: Tensor
    """`[26, d]` unit probe direction of each letter in raw activation space (zero for absent letters)."""
    correct: Tensor
    """`[n_test]` bool: the probe names the word's first letter."""


def prefix_ids(tokenizer, prefix: str) -> list[int]:
    if prefix == "bos":
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is None:
            raise SAEConfigError(
                "absorption: the tokenizer has no BOS token; give a text prefix, e.g. "
                "--absorption.prefix 'Word:'"
            )
        return [int(bos)]
    return list(tokenizer(prefix, add_special_tokens=False, verbose=False)["input_ids"]) if prefix else []


def fit_letter_probe(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, c: float
) -> LetterProbe:
    """Multinomial logistic regression on standardised activations; directions mapped back to raw units."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    xt = x_train.double().numpy()
    mu, sd = xt.mean(0), xt.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=c, max_iter=300).fit((xt - mu) / sd, y_train.numpy())
    coef = clf.coef_ / sd  # logit = coef_raw . x + const
    if coef.shape[0] == 1:  # two letters: scikit-learn keeps one row, for the second class
        coef = np.concatenate([-coef, coef])
    direction = torch.zeros(26, x_train.shape[1], dtype=torch.float64)
    direction[torch.as_tensor(clf.classes_)] = torch.nn.functional.normalize(torch.as_tensor(coef), dim=-1)
    pred = clf.predict((x_test.double().numpy() - mu) / sd)
    return LetterProbe(x_train, y_train, x_test, y_test, direction.float(), torch.as_tensor(pred) == y_test)


def letter_probe(lm, hook_point, cfg: AbsorptionConfig, *, quiet: bool = True) -> LetterProbe:
    """Words of the vocabulary, their activations and the letter probe, split by word."""
    from tqdm.auto import tqdm

    from saekit.bench.activations import token_rows, vocabulary_words

    vocab = lm.model.get_input_embeddings().num_embeddings
    words = vocabulary_words(
        lm.tokenizer, vocab, min_letters=cfg.min_letters, max_words=cfg.max_words, seed=cfg.seed
    )
    bar = tqdm(total=len(words.token_id), desc="absorption: model", unit="word", disable=quiet)
    x = token_rows(
        lm,
        hook_point,
        words.token_id,
        prefix_ids(lm.tokenizer, cfg.prefix),
        batch_size=cfg.batch_size,
        progress=bar,
    )
    bar.close()
    perm = torch.as_tensor(np.random.default_rng(cfg.seed + 1).permutation(len(x)))
    n_test = max(1, int(round(cfg.test_fraction * len(x))))
    te, tr = perm[:n_test], perm[n_test:]
    return fit_letter_probe(x[tr], words.letter[tr], x[te], words.letter[te], cfg.c)


def _f1(pred: Tensor, truth: Tensor) -> float:
    tp = float((pred & truth).sum())
    return 2 * tp / max(float(pred.sum()) + float(truth.sum()), 1.0)


def main_latents(
    fired_NC: Tensor, is_letter_N: Tensor, candidates: list[int], cfg: AbsorptionConfig
) -> tuple[list[int], float]:
    """The top-cosine candidate, then greedily the candidate that most raises the F1 of "any chosen latent
    fires" while the gain is at least `split_f1_gain` (columns of `fired_NC` follow `candidates`). Returns
    the chosen latents and their F1 on these words."""
    chosen = [0]
    pred = fired_NC[:, 0].clone()
    best = _f1(pred, is_letter_N)
    while len(chosen) < min(cfg.max_split, len(candidates)):
        gains = [
            (_f1(pred | fired_NC[:, j], is_letter_N), j) for j in range(len(candidates)) if j not in chosen
        ]
        f1, j = max(gains)
        if f1 - best < cfg.split_f1_gain:
            break
        chosen.append(j)
        pred |= fired_NC[:, j]
        best = f1
    return [candidates[j] for j in chosen], best


@torch.no_grad()
def absorption_metrics(
    sae, probe: LetterProbe, cfg: AbsorptionConfig, *, n_boot: int = 1000, seed: int = 0, chunk: int = 1024
) -> dict:
    """Absorption rate, main-miss rate, split latents per letter (module docstring) with intervals."""
    dev = next(sae.parameters()).device
    p_LD = probe.direction.to(dev)
    latent_dirs = sae.W_dec if cfg.direction == "decoder" else sae.W_enc.T
    cos_LF = torch.nn.functional.normalize(latent_dirs.float(), dim=-1) @ p_LD.T  # [d_sae, 26]
    cos_LF = cos_LF.T  # [26, d_sae]
    dec_cos_LF = (torch.nn.functional.normalize(sae.W_dec.float(), dim=-1) @ p_LD.T).T
    proj_LF = (sae.W_dec.float() @ p_LD.T).T  # decoder . p_L, normalised units
    letters = sorted(set(probe.y_train.tolist()) & set(probe.y_test.tolist()))
    n_cand = min(cfg.candidates, sae.d_sae)
    cand = {L: cos_LF[L].topk(n_cand).indices.tolist() for L in letters}
    fired_train = torch.cat([(sae.encode(c.to(dev)) != 0).cpu() for c in probe.x_train.split(chunk)])
    chosen = {L: main_latents(fired_train[:, cand[L]], probe.y_train == L, cand[L], cfg) for L in letters}
    mains = {L: m for L, (m, _) in chosen.items()}
    rows = []
    for lo in range(0, len(probe.x_test), chunk):
        x = probe.x_test[lo : lo + chunk].to(dev)
        y = probe.y_test[lo : lo + chunk]
        lat = sae.encode(x).float()
        contrib = sae.delta_to_raw(lat * proj_LF[y.to(dev)], x).float()  # [b, d_sae] along p_L, raw units
        own = ((x - sae.decode(torch.zeros_like(lat), x)).float() * p_LD[y.to(dev)]).sum(-1)
        top_val, top_idx = contrib.max(-1)
        for i in range(len(x)):
            L = int(y[i])
            if L not in mains or not bool(probe.correct[lo + i]):
                continue
            silent = bool((lat[i, mains[L]] == 0).all())
            absorbed = (
                silent
                and float(own[i]) > 0
                and float(dec_cos_LF[L, top_idx[i]]) >= cfg.cos_threshold
                and float(top_val[i]) >= cfg.projection_share * float(own[i])
            )
            rows.append((L, float(absorbed), float(silent)))
    return _summarise(rows, chosen, cos_LF, letters, n_boot, seed)


def _summarise(rows, chosen, cos_LF, letters, n_boot: int, seed: int) -> dict:
    mains = {L: m for L, (m, _) in chosen.items()}
    if not rows:
        nan = Interval(float("nan"), float("nan"), float("nan"), 0)
        return {"absorption_rate": nan, "main_miss_rate": nan, "split_latents": nan, "letters": {}}
    arr = np.array(rows)
    strata = arr[:, 0].astype(int)
    one = np.ones(len(arr))
    out = {
        name: bootstrap(
            np.stack([arr[:, col], one], 1), mean_of_strata, strata=strata, n_boot=n_boot, seed=seed
        )
        for name, col in (("absorption_rate", 1), ("main_miss_rate", 2))
    }
    split = np.array([[len(mains[L]), 1.0] for L in letters])
    out["split_latents"] = bootstrap(split, mean_stat, n_boot=n_boot, seed=seed)
    out["letters"] = {
        string.ascii_lowercase[L]: {
            "main_latents": mains[L],
            "cosines": [round(float(cos_LF[L, j]), 4) for j in mains[L]],
            "train_f1": round(chosen[L][1], 4),
            "eligible_words": int((strata == L).sum()),
            "absorbed": int(arr[strata == L, 1].sum()),
        }
        for L in letters
    }
    return out


def probe_accuracy(probe: LetterProbe, *, n_boot: int = 1000, seed: int = 0) -> Interval:
    """Held-out accuracy of the letter probe (bootstrap over words)."""
    c = probe.correct.double().numpy()
    return bootstrap(np.stack([c, np.ones_like(c)], 1), mean_stat, n_boot=n_boot, seed=seed)
