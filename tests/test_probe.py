"""Choices by measurement: the cache key, the cache itself, and `--dtype auto` from timings."""

from __future__ import annotations

import json

import pytest
import torch

from saekit import device as dv
from saekit import probe

CPU = torch.device("cpu")


def test_machine_key_changes_with_dispatch_limits_and_threads(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    base = probe.machine_key(CPU)
    assert torch.__version__ in base and probe.cpu_name() in base
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert probe.machine_key(CPU) != base and "ONEDNN_MAX_CPU_ISA=AVX2" in probe.machine_key(CPU)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(old + 1)
        assert probe.machine_key(CPU) != base
    finally:
        torch.set_num_threads(old)


def test_cached_figures_measure_once_and_survive_a_broken_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(probe, "machine_busy", lambda: False)
    calls = []

    def measure():
        calls.append(1)
        return {"a": 1.5}

    assert probe.cached_figures("t", "k1", measure) == ({"a": 1.5}, False)
    assert probe.cached_figures("t", "k1", measure) == ({"a": 1.5}, True)
    assert probe.cached_figures("t", "k2", measure) == ({"a": 1.5}, False)
    assert len(calls) == 2 and set(json.loads((tmp_path / "probes" / "t.json").read_text())) == {"k1", "k2"}
    (tmp_path / "probes" / "t.json").write_text("\x00garbage")
    assert probe.cached_figures("t", "k1", measure) == ({"a": 1.5}, False) and len(calls) == 3


def test_a_probe_on_a_busy_machine_is_used_but_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(probe, "machine_busy", lambda: True)
    calls = []
    assert probe.cached_figures("t", "k", lambda: calls.append(1) or {"a": 2.0}) == ({"a": 2.0}, False)
    assert probe.cached_figures("t", "k", lambda: calls.append(1) or {"a": 2.0}) == ({"a": 2.0}, False)
    assert len(calls) == 2 and not (tmp_path / "probes" / "t.json").exists()
    monkeypatch.undo()  # the real rule, on made-up loads
    monkeypatch.setattr(probe.os, "getloadavg", lambda: (9.0, 0, 0))
    monkeypatch.setattr(probe.os, "cpu_count", lambda: 2)
    assert probe.machine_busy()
    monkeypatch.setattr(probe.os, "getloadavg", lambda: (1.5, 0, 0))
    assert not probe.machine_busy()


def test_candidates_are_timed_in_turn_and_each_gets_its_best():
    order = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    times = probe.time_candidates_ms(fns, CPU, reps=2, warmup=1)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    assert order == ["a", "b", "a", "b", "a", "b"]  # warm-ups, then round after round


def test_time_ms_is_the_best_of_the_repeats():
    seen = []
    assert probe.time_ms(lambda: seen.append(1), CPU, reps=4, warmup=2) >= 0 and len(seen) == 6


@pytest.mark.parametrize(
    "times, expected",
    [
        ({"float32": 40.0, "bfloat16": 9.0}, "bfloat16"),  # native bf16 (AVX-512 BF16 / AMX)
        ({"float32": 13.0, "bfloat16": 52.0}, "float32"),  # bf16 emulated (AVX2 dispatch)
        ({"float32": 10.0, "bfloat16": 9.5}, "float32"),  # a 5% gain is a tie: keep fp32's precision
    ],
)
def test_auto_model_dtype_follows_the_measurement_not_the_flags(tmp_path, monkeypatch, times, expected):
    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(probe, "machine_busy", lambda: False)
    monkeypatch.setattr(dv, "bf16_matmul_times", lambda device: times)
    assert dv.auto_model_dtype(CPU) == expected
    assert dv.cpu_has_fast_bf16() == (expected == "bfloat16")


def test_bf16_matmul_times_measures_both_dtypes():
    t = dv.bf16_matmul_times(CPU, rows=8, d=16, hidden=32)
    assert set(t) == {"float32", "bfloat16"} and all(v > 0 for v in t.values())
