"""Sparse probing (SAEBench): can k latents of the SAE tell the classes of a task apart?

Per task (`saekit.bench.tasks`), each text is one feature vector: its SAE latents (or, for the
baselines, its raw activations) mean-pooled over its tokens. On the training texts, the k latents whose
class means differ most are chosen (binary: the largest |mean(class 1) - mean(class 0)|, as SAEBench;
several classes: each class in turn takes the latent not chosen yet whose mean in it is most above its
mean in the other classes, so every class gets its own best latents), then a logistic regression on
those k standardised features (L2, strength 1 / `c`) is fitted and scored on the held-out texts.
Baselines on the raw activations: the same rule at the same k, and one probe on all `d_in` dimensions.

Accuracy intervals are a bootstrap over the test set's groups (documents, or plays), the mean over tasks
one over every task's groups, resampled within each task. They cover the test sample only: the probe
and the chosen latents stay fixed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from saekit.bench.bootstrap import Interval, bootstrap, mean_of_strata, mean_stat
from saekit.bench.tasks import TASKS, Task, build_task
from saekit.errors import SAEConfigError


@dataclass(frozen=True)
class ProbingConfig:
    """Sparse probing (`--probing.*`)."""

    tasks: tuple[str, ...] = TASKS
    """Tasks to run (see `saekit.bench.tasks`)."""
    ks: tuple[int, ...] = (1, 2, 5, 20)
    """Latents per sparse probe."""
    n_train: int = 96
    """Training texts per class (fewer when a class has fewer)."""
    n_test: int = 48
    """Test texts per class."""
    words: int = 32
    """Words per Bible or speech passage."""
    max_tokens: int = 48
    """Tokens of each text fed to the model (the rest is cut)."""
    c: float = 1.0
    """Inverse L2 strength of the logistic regressions (scikit-learn's C), on standardised features."""
    batch_size: int = 32
    """Texts per forward pass."""
    seed: int = 0
    """Seed of the group split and the text sample."""

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise SAEConfigError(f"probing: unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
        if not self.ks or min(self.ks) < 1:
            raise SAEConfigError(f"probing: --probing.ks must be positive integers, got {self.ks}")


class ProbeData(NamedTuple):
    """The SAE-independent part: tasks, the texts' token activations, their raw mean-pooled features."""

    tasks: list[Task]
    rows: Tensor
    """`[rows, d]` token activations of every distinct text."""
    text: Tensor
    """`[rows]` index of each row's text."""
    n_texts: int
    index: dict[str, tuple[np.ndarray, np.ndarray]]
    """task -> (train text indices, test text indices)."""
    raw: Tensor
    """`[n_texts, d]` mean-pooled raw activations."""


def probe_data(lm, hook_point, cfg: ProbingConfig, *, max_norm_ratio: float = 50.0, quiet: bool = True):
    """Build the tasks and run the model once over their distinct texts."""
    from tqdm.auto import tqdm

    from saekit.bench.activations import mean_pool, text_rows

    tasks = [
        build_task(t, n_train=cfg.n_train, n_test=cfg.n_test, words=cfg.words, seed=cfg.seed)
        for t in cfg.tasks
    ]
    texts: dict[str, int] = {}
    index = {}
    for task in tasks:
        split = [
            np.array([texts.setdefault(e.text, len(texts)) for e in part]) for part in (task.train, task.test)
        ]
        index[task.name] = (split[0], split[1])
    bar = tqdm(total=len(texts), desc="probing: model", unit="text", disable=quiet)
    tr = text_rows(
        lm,
        hook_point,
        list(texts),
        max_tokens=cfg.max_tokens,
        batch_size=cfg.batch_size,
        max_norm_ratio=max_norm_ratio,
        progress=bar,
    )
    bar.close()
    return ProbeData(tasks, tr.rows, tr.text, tr.n_texts, index, mean_pool(tr.rows, tr.text, tr.n_texts))


@torch.no_grad()
def pooled_latents(sae, data: ProbeData, chunk: int = 4096) -> Tensor:
    """`[n_texts, d_sae]` SAE latents mean-pooled over each text's tokens."""
    dev = next(sae.parameters()).device
    out = torch.zeros(data.n_texts, sae.d_sae, dtype=torch.float64)
    for lo in range(0, data.rows.shape[0], chunk):
        lat = sae.encode(data.rows[lo : lo + chunk].to(dev)).double().cpu()
        out.index_add_(0, data.text[lo : lo + chunk], lat)
    count = torch.bincount(data.text, minlength=data.n_texts).clamp_min(1)
    return (out / count[:, None]).float()


def select_by_mean_difference(features_NF: np.ndarray, y_N: np.ndarray, k: int) -> np.ndarray:
    """The k features whose class means differ most (module docstring), in the order chosen."""
    classes = np.unique(y_N)
    k = min(k, features_NF.shape[1])
    if len(classes) == 2:
        diff = np.abs(features_NF[y_N == classes[1]].mean(0) - features_NF[y_N == classes[0]].mean(0))
        return np.argsort(-diff, kind="stable")[:k]
    ranked = [
        iter(np.argsort(features_NF[y_N != c].mean(0) - features_NF[y_N == c].mean(0), kind="stable"))
        for c in classes
    ]
    chosen: list[int] = []
    while len(chosen) < k:
        for order in ranked:  # each class in turn takes its best latent not chosen yet
            j = next(int(j) for j in order if int(j) not in chosen)
            if len(chosen) < k:
                chosen.append(j)
    return np.array(chosen)


def fit_and_score(train_NF: np.ndarray, y_train: np.ndarray, test_MF: np.ndarray, c: float) -> np.ndarray:
    """Predicted test labels of an L2 logistic regression on features standardised on train."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    mu, sd = train_NF.mean(0), train_NF.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached: a slightly weaker probe
        clf = LogisticRegression(C=c, max_iter=1000).fit((train_NF - mu) / sd, y_train)
    return clf.predict((test_MF - mu) / sd)


def _labels(task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([e.label for e in task.train]),
        np.array([e.label for e in task.test]),
        np.array([e.group for e in task.test]),
    )


def probe_accuracies(
    features: Tensor, data: ProbeData, ks: tuple[int, ...], c: float, *, full: bool = False
) -> dict[str, dict]:
    """task -> {"k1": correct [n_test] bool, ..., "k1_features": [j], ("full": correct)}."""
    f = features.double().numpy()
    out: dict[str, dict] = {}
    for task in data.tasks:
        tr, te = data.index[task.name]
        y_tr, y_te, _ = _labels(task)
        res: dict = {}
        for k in ks:
            sel = select_by_mean_difference(f[tr], y_tr, k)
            res[f"k{k}"] = fit_and_score(f[tr][:, sel], y_tr, f[te][:, sel], c) == y_te
            res[f"k{k}_features"] = [int(j) for j in sel]
        if full:
            res["full"] = fit_and_score(f[tr], y_tr, f[te], c) == y_te
        out[task.name] = res
    return out


def summarise(correct: dict[str, dict], data: ProbeData, prefix: str, *, n_boot: int, seed: int) -> dict:
    """Accuracy intervals per task and their mean over tasks, keys `{prefix}_k1`, ..., `{prefix}_full`."""
    tasks = {t.name: t for t in data.tasks}
    keys = [k for k in next(iter(correct.values())) if not k.endswith("_features")]
    per_task: dict[str, dict] = {}
    mean: dict[str, Interval] = {}
    for key in keys:
        stats, clusters, strata = [], [], []
        for s, (name, res) in enumerate(correct.items()):
            groups = _labels(tasks[name])[2]
            rows = np.stack([res[key].astype(np.float64), np.ones(len(res[key]))], axis=1)
            iv = bootstrap(rows, mean_stat, clusters=groups, n_boot=n_boot, seed=seed)
            per_task.setdefault(name, {})[f"{prefix}_{key}"] = iv
            stats.append(rows)
            clusters += [f"{name}/{g}" for g in groups]
            strata += [s] * len(groups)
        mean[f"{prefix}_{key}"] = bootstrap(
            np.concatenate(stats),
            mean_of_strata,
            clusters=np.array(clusters),
            strata=np.array(strata),
            n_boot=n_boot,
            seed=seed,
        )
    for name, res in correct.items():
        for key, value in res.items():
            if key.endswith("_features"):
                per_task[name][f"{prefix}_{key}"] = value
        per_task[name]["chance"] = tasks[name].chance
    return {"mean": mean, "tasks": per_task}
