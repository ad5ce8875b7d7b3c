"""Sparse probing with known answers: a planted class latent is found by a 1-sparse probe, a random SAE
sits at the chance floor, the latent selection and the task split behave as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saekit.bench.probing import (
    ProbeData,
    pooled_latents,
    probe_accuracies,
    select_by_mean_difference,
    summarise,
)
from saekit.bench.tasks import Example, Task, build_task
from saekit.sae import SAEConfig, build

from .conftest import relu_sae

D, F, PLANTED = 256, 64, 7


def _data(signal: float, n_train=200, n_test=400, tokens=16, seed=0) -> ProbeData:
    """Binary task: class-1 texts add `signal` along e0 to every token; each text is its own group."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    y = torch.arange(n) % 2
    x = torch.randn(n, tokens, D, generator=g)
    x[:, :, 0] += signal * y[:, None]
    ex = [Example(f"text {i}", int(y[i]), f"g{i}") for i in range(n)]
    task = Task("planted", ("no", "yes"), tuple(ex[:n_train]), tuple(ex[n_train:]))
    index = {"planted": (np.arange(n_train), np.arange(n_train, n))}
    text = torch.arange(n).repeat_interleave(tokens)
    return ProbeData([task], x.reshape(-1, D), text, n, index, x.mean(1))


def _planted_sae():
    """Random unit encoder directions orthogonal to e0, except latent PLANTED, which is exactly e0."""
    g = torch.Generator().manual_seed(3)
    W = torch.nn.functional.normalize(torch.randn(D, F, generator=g), dim=0)
    W[0] = 0
    W[:, PLANTED] = torch.eye(D)[0]
    return relu_sae(W, W.T.contiguous())


def test_planted_latent_is_found_by_the_1_sparse_probe():
    data = _data(signal=2.0)
    correct = probe_accuracies(pooled_latents(_planted_sae(), data), data, (1, 5), 1.0)
    assert correct["planted"]["k1_features"] == [PLANTED]
    out = summarise(correct, data, "sae", n_boot=200, seed=0)
    assert out["mean"]["sae_k1"].value >= 0.99
    assert out["tasks"]["planted"]["sae_k1_features"] == [PLANTED]
    assert out["tasks"]["planted"]["chance"] == 0.5


def test_random_sae_probes_at_the_chance_floor():
    """A weak class signal that the planted latent still reads, but no random latent is aligned with."""
    data = _data(signal=0.5)
    random_sae = build(SAEConfig(d_in=D, d_sae=F, arch="topk", k=8, normalization="none"), seed=1).eval()
    rnd = summarise(
        probe_accuracies(pooled_latents(random_sae, data), data, (1,), 1.0), data, "sae", n_boot=500, seed=0
    )["mean"]["sae_k1"]
    planted = summarise(
        probe_accuracies(pooled_latents(_planted_sae(), data), data, (1,), 1.0),
        data,
        "sae",
        n_boot=500,
        seed=0,
    )["mean"]["sae_k1"]
    assert rnd.lo <= 0.5 <= rnd.hi and abs(rnd.value - 0.5) < 0.06
    assert planted.lo > 0.7


def test_pooled_latents_are_the_mean_over_each_texts_tokens():
    data = _data(signal=1.0, n_train=4, n_test=4, tokens=3)
    sae = _planted_sae()
    with torch.no_grad():
        ref = sae.encode(data.rows.reshape(8, 3, D)).mean(1)
    assert torch.allclose(pooled_latents(sae, data, chunk=5), ref, atol=1e-6)


def test_mean_difference_selection_binary_and_round_robin():
    f = np.zeros((6, 4))
    y = np.array([0, 0, 1, 1, 2, 2])
    f[y == 1, 2] = 5.0  # class 1's latent
    f[y == 2, 0] = 3.0  # class 2's latent
    f[y == 0, 3] = 1.0  # class 0's latent (smallest difference, still chosen in its turn)
    assert list(select_by_mean_difference(f, y, 3)) == [3, 2, 0]
    binary = np.array([0, 0, 0, 1, 1, 1])
    g = np.zeros((6, 3))
    g[binary == 1, 1] = -4.0  # the sign does not matter
    g[binary == 1, 2] = 1.0
    assert list(select_by_mean_difference(g, binary, 2)) == [1, 2]


@pytest.mark.parametrize("name", ["testament", "direction"])
def test_tasks_are_balanced_and_split_by_group(name):
    task = build_task(name, n_train=20, n_test=10)
    assert not {e.group for e in task.train} & {e.group for e in task.test}
    for part in (task.train, task.test):
        counts = np.bincount([e.label for e in part], minlength=len(task.classes))
        assert len(set(counts.tolist())) == 1
