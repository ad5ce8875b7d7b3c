"""Hostile input for every reader (issue 21, item 6): each mutated copy of a valid SAE either is refused
with a saekit error or loads into an SAE whose latents and reconstructions are finite.

For each reader a valid fixture is written with the tensors and writers of the format tests, then
mutated deterministically: truncations, flipped bytes, one-byte weights files (all 256 first bytes for
a torch pickle), edited configs (missing keys, strings, floats for integers, zero, negative, huge, NaN,
k > d_sae), tensor dtypes (int32, int8, bool, float16 with values that overflow), shapes (flattened,
transposed, one off, an extra dimension, empty), weights near the float32 maximum, NaN/inf, deleted
tensors, and pickles whose unpickling would create a marker file. Every case goes through `saekit.load`
and an encode/decode of a batch. The test fails on any exception that is not a `SaekitError`, on a load
whose outputs are NaN/inf, and if the marker ever appears; the number of cases is asserted so the test
cannot shrink silently. A mutation that leaves a valid SAE (a flipped bit in a mantissa) may load.
`pytest -s` prints the per-reader counts.
"""

from __future__ import annotations

import copy
import io
import json
import math
import pickle
import random
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import saekit
from saekit.errors import SAEFormatError, SaekitError
from saekit.formats import known_formats
from saekit.sae import SAEConfig, build

from .conftest import D_IN, D_SAE, acts, rand
from .test_dictionary_learning import linear_ae, write_dl
from .test_reny import linear_tensors, write_reny
from .test_saelens import base_tensors, write_saelens
from .test_saev import header, saev_state, write_saev
from .test_single_files import gytdau_state, openai_state
from .test_sparsify import sparsify_tensors, write_sparsify

#: Cases below these counts mean the generators lost mutations (the test must not shrink silently).
MIN_CASES = 8000
MIN_PER_READER = 400

Tensors = dict[str, torch.Tensor]
Configs = dict[str, dict[str, Any]]


class Payload:
    """Unpickling this (fully) creates `marker`: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Fixture:
    """One valid SAE of one reader, and how to write a (mutated) copy of it."""

    reader: str
    variant: str
    tensors: Tensors
    configs: Configs
    """Editable JSON-like settings by file (or, for pickled formats, by the entries they hold)."""
    write: Callable[[Path, Tensors, Configs], None]
    """Writes the whole SAE into a folder."""
    weights: str
    """The weights file, relative to the folder."""
    target: str = ""
    """What `saekit.load` is pointed at, relative to the folder ("" = the folder)."""
    pickled: bool = False
    """The weights file is a torch pickle (one-byte files use all 256 first bytes; payloads apply)."""
    primary: bool = False
    """The reader's first fixture: it gets the full config value set, more flipped bytes, all 256 one-byte
    files (the other fixtures of a reader a sample, to keep the test fast)."""


@dataclass
class Tally:
    tried: int = 0
    refused: int = 0
    loaded: int = 0
    foreign: list[str] = field(default_factory=list)
    nonfinite: list[str] = field(default_factory=list)


# -- writers ---------------------------------------------------------------------------------------
def _json_files(folder: Path, configs: Configs) -> None:
    for name, obj in configs.items():
        (folder / name).write_text(json.dumps(obj))


def _native_write(folder: Path, t: Tensors, c: Configs) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(folder / "model.safetensors"))
    _json_files(folder, c)


def _saelens_write(folder: Path, t: Tensors, c: Configs) -> None:
    write_saelens(folder, t)
    _json_files(folder, c)


def _sparsify_write(folder: Path, t: Tensors, c: Configs) -> None:
    write_sparsify(folder, t)
    _json_files(folder, c)


def _reny_write(folder: Path, t: Tensors, c: Configs) -> None:
    write_reny(folder, t)
    _json_files(folder, c)


def _dl_write(folder: Path, t: Tensors, c: Configs) -> None:
    write_dl(folder, t, "AutoEncoder")
    _json_files(folder, {k: v for k, v in c.items() if k.endswith(".json")})
    if "backup" in c:  # a mid-training checkpoint: {"ae": state, "norm_factor": f, ...}
        torch.save({"ae": t, **c["backup"]}, folder / "ae.pt")


def _file_write(name: str, entries: str | None = None) -> Callable[[Path, Tensors, Configs], None]:
    """A single torch.save'd state dict, with the plain entries of `configs[entries]` beside the tensors."""

    def write(folder: Path, t: Tensors, c: Configs) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({**t, **(c[entries] if entries else {})}, folder / name)

    return write


def _saev_write(folder: Path, t: Tensors, c: Configs) -> None:
    write_saev(folder / "sae.pt", c["header"], t)


# -- the valid fixtures ----------------------------------------------------------------------------
def _read_configs(write: Callable[[Path, Tensors, Configs], None], t: Tensors, names: list[str], tmp: Path):
    """The JSON files a format test writer produces, read back as the editable base configs."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    write(folder, t, {})
    configs = {n: json.loads((folder / n).read_text()) for n in names}
    shutil.rmtree(folder)
    return configs


def _native(variant: str, arch: str, tmp: Path, **kw) -> Fixture:
    torch.manual_seed(0)
    sae = build(SAEConfig(d_in=D_IN, d_sae=D_SAE, arch=arch, **kw))
    with torch.no_grad():
        sae.b_dec.copy_(rand(D_IN, seed=3, scale=0.3))
        sae.input_scale.fill_(0.25 if kw.get("normalization") == "expected_norm" else 1.0)
    folder = tmp / f"native-{variant}"
    sae.save(folder)
    meta = json.loads((folder / "config.json").read_text())
    for key in ("files", "pair"):  # no record: as a folder saved before checksums, so tensor checks run
        meta.pop(key)
    t = load_file(str(folder / "model.safetensors"))
    shutil.rmtree(folder)
    return Fixture("saekit", variant, t, {"config.json": meta}, _native_write, "model.safetensors")


def _saelens(variant: str, t: Tensors, tmp: Path, scaler: float | None = None, **cfg) -> Fixture:
    def write(folder: Path, tt: Tensors, c: Configs) -> None:
        write_saelens(folder, tt, **cfg)
        _json_files(folder, c)

    configs = _read_configs(write, t, ["cfg.json"], tmp)
    if scaler is not None:
        configs["activation_scaler.json"] = {"scaling_factor": scaler}
    return Fixture("saelens", variant, t, configs, _saelens_write, "sae_weights.safetensors")


def _dl(variant: str, t: Tensors, cls: str, tmp: Path, **trainer) -> Fixture:
    folder = write_dl(tmp / f"dl-{variant}", t, cls, **trainer)
    configs = {"config.json": json.loads((folder / "config.json").read_text())}
    shutil.rmtree(folder)
    return Fixture("dictionary_learning", variant, t, configs, _dl_write, "ae.pt", pickled=True)


def _sparsify(variant: str, t: Tensors, tmp: Path, **cfg) -> Fixture:
    configs = _read_configs(_sparsify_write, t, ["cfg.json"], tmp)
    configs["cfg.json"].update(cfg)
    return Fixture("sparsify", variant, t, configs, _sparsify_write, "sae.safetensors")


def _reny(variant: str, t: Tensors, **cfg) -> Fixture:
    configs = {"config.json": {"features": D_IN, "pages": D_SAE, **cfg}}
    return Fixture("reny", variant, t, configs, _reny_write, "model.safetensors")


def _openai(variant: str, state: dict[str, Any]) -> Fixture:
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    entries = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    write = _file_write("sae.pt", "entries")
    return Fixture("openai", variant, tensors, {"entries": entries}, write, "sae.pt", "sae.pt", True)


def _saev(variant: str, state: Tensors, head: dict[str, Any], target: str) -> Fixture:
    return Fixture("saev", variant, state, {"header": head}, _saev_write, "sae.pt", target, True)


def fixtures(tmp: Path) -> list[Fixture]:
    """A valid SAE per reader and, where a reader has several classes or conventions, per variant."""
    tmp.mkdir(parents=True, exist_ok=True)
    dl_topk = {**linear_ae(10, bias_name="b_dec"), "k": torch.tensor(4), "threshold": torch.tensor(-1.0)}
    dl_batch = {**linear_ae(20, bias_name="b_dec"), "k": torch.tensor(4), "threshold": torch.tensor(0.3)}
    dl_jump = {
        "W_enc": rand(D_IN, D_SAE, seed=40, scale=0.5),
        "b_enc": rand(D_SAE, seed=41, scale=0.3),
        "W_dec": rand(D_SAE, D_IN, seed=42, scale=0.5),
        "b_dec": rand(D_IN, seed=43, scale=0.3),
        "threshold": rand(D_SAE, seed=44, scale=0.1).abs(),
    }
    backup = _dl("AutoEncoder-backup", linear_ae(0), "AutoEncoder", tmp)
    backup.configs["backup"] = {"norm_factor": 2.0, "step": 100}
    jump = {**base_tensors(seed=6), "threshold": rand(D_SAE, seed=7, scale=0.1).abs()}
    gated = {**base_tensors(seed=8), "r_mag": rand(D_SAE, seed=9, scale=0.1), "b_mag": rand(D_SAE, seed=10)}
    gated["b_gate"] = gated.pop("b_enc")
    batchtopk = {**base_tensors(seed=3), "topk_threshold": torch.tensor(0.2)}
    skip = {**sparsify_tensors(seed=3), "W_skip": rand(D_IN, D_IN, seed=4, scale=0.3)}
    reny_jump = {**linear_tensors(seed=5), "logthres": rand(D_SAE, seed=9, scale=0.1) - 2.0}
    return [
        _native("topk", "topk", tmp, k=4),
        _native("jumprelu", "jumprelu", tmp, normalization="expected_norm"),
        _native("topk-float16", "topk", tmp, k=4, dtype="float16"),
        _saelens("standard", base_tensors(), tmp, architecture="standard"),
        _saelens("topk", base_tensors(seed=1), tmp, architecture="topk", k=4),
        _saelens("jumprelu", jump, tmp, architecture="jumprelu"),
        _saelens("gated", gated, tmp, architecture="gated"),
        _saelens("batchtopk", batchtopk, tmp, architecture="batchtopk", k=4.0),
        _saelens(
            "expected_average",
            base_tensors(seed=2),
            tmp,
            scaler=0.5,
            architecture="standard",
            normalize_activations="expected_average_only_in",
        ),
        _sparsify("topk", sparsify_tensors(), tmp),
        _sparsify("skip", skip, tmp, skip_connection=True),
        _dl("AutoEncoder", linear_ae(0), "AutoEncoder", tmp),
        _dl("AutoEncoderTopK", dl_topk, "AutoEncoderTopK", tmp, k=4),
        _dl("BatchTopKSAE", dl_batch, "BatchTopKSAE", tmp, k=4),
        _dl("JumpReluAutoEncoder", dl_jump, "JumpReluAutoEncoder", tmp),
        backup,
        _reny("topk", linear_tensors(), k=4),
        _reny("standard", linear_tensors(seed=1)),
        _reny("gated", linear_tensors(seed=2, gated=True)),
        _reny("jumprelu", reny_jump, bandwidth=0.01),
        Fixture("gytdau", "relu", gytdau_state(), {}, _file_write("sae.pth"), "sae.pth", "sae.pth", True),
        _openai("TopK", openai_state()),
        _openai("ReLU-tied", openai_state(activation="ReLU", tied=True)),
        _saev("TopK-schema5", saev_state(), header(5), ""),
        _saev("Relu-original", saev_state(seed=1), header(None), "sae.pt"),
        _saev("BatchTopK-schema2", saev_state(seed=2, threshold=0.3), header(2, cls="BatchTopK"), ""),
    ]


# -- mutations -------------------------------------------------------------------------------------
#: Replacement config values: strings, floats for integers, zero, negative, huge, NaN/inf, wrong types,
#: k > d_sae (D_SAE + 1). 8.0 is a valid integer; "topk" a valid-looking string in the wrong place.
VALUES: tuple[Any, ...] = (
    "8",
    8.7,
    8.0,
    -1,
    0,
    1e30,
    2**40,
    None,
    [8],
    {},
    True,
    math.nan,
    math.inf,
    D_SAE + 1,
    "topk",
    2**70,
)
#: The values tried on the configs of a reader's other fixtures.
SHORT_VALUES: tuple[Any, ...] = ("8", 8.7, -1, None, 2**70)
Case = tuple[str, Callable[[Path], None], dict[str, Any]]


def _paths(obj: dict[str, Any], prefix: tuple[str, ...] = (), depth: int = 3) -> Iterator[tuple[str, ...]]:
    """Every key path into nested dicts, up to `depth` keys long."""
    for key, value in obj.items():
        yield (*prefix, key)
        if isinstance(value, dict) and depth > 1:
            yield from _paths(value, (*prefix, key), depth - 1)


def _edited(obj: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool = False) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def config_cases(fx: Fixture, valid: Path) -> Iterator[Case]:
    for name, obj in fx.configs.items():

        def with_config(edited: dict[str, Any], name: str = name) -> Callable[[Path], None]:
            if name.endswith(".json"):  # a file of its own: copy the valid SAE, rewrite only that file
                return _copy_then(valid, _set_bytes(name, json.dumps(edited).encode()))
            return _writer(fx, fx.tensors, {**fx.configs, name: edited})  # inside the weights file

        for path in _paths(obj, depth=3 if fx.primary else 2):
            where = f"{name}:{'.'.join(path)}"
            yield f"{where} deleted", with_config(_edited(obj, path, 0, delete=True)), {}
            for value in VALUES if fx.primary else SHORT_VALUES:
                yield f"{where}={value!r:.20}", with_config(_edited(obj, path, value)), {}


def _writer(fx: Fixture, tensors: Tensors, configs: Configs) -> Callable[[Path], None]:
    return lambda folder: fx.write(folder, tensors, configs)


def _tensor_edits(t: torch.Tensor) -> Iterator[tuple[str, torch.Tensor | None]]:
    f = t.detach().to(torch.float32)
    peak = float(f.abs().max()) if f.numel() else 0.0
    yield "int32", t.to(torch.int32)
    yield "int8", (f * 10).to(torch.int8)
    yield "bool", f > 0
    yield "float16", t.to(torch.float16)  # valid: loads in float16
    yield "bfloat16", t.to(torch.bfloat16)  # valid
    yield "float64", t.to(torch.float64)  # valid
    if peak > 0:
        yield "float16 near its max", (f / peak * 60000).to(torch.float16)  # finite, overflows in use
        yield "near float32 max", f / peak * 3.0e38
        yield "1e5 (past float16)", f / peak * 1e5
    yield "flattened", t.reshape(-1)
    yield "extra dim", t[None]
    if t.ndim == 2:
        yield "transposed", t.T.contiguous()
    if t.ndim >= 1 and t.shape[0] > 1:
        yield "one off", t[:-1].contiguous()
        yield "empty", t[:0].contiguous()
    if t.is_floating_point() and t.numel():
        for bad in (math.nan, math.inf, -math.inf):
            b = t.clone()
            b.view(-1)[t.numel() // 2] = bad
            yield f"{bad} injected", b
    yield "deleted", None


def tensor_cases(fx: Fixture) -> Iterator[Case]:
    for name, t in fx.tensors.items():
        for what, edited in _tensor_edits(t):
            tensors = {k: v for k, v in fx.tensors.items() if k != name}
            if edited is not None:
                tensors[name] = edited
            yield f"{name} {what}", _writer(fx, tensors, fx.configs), {}
    for what, dtype, scale in (("all float16 near max", torch.float16, 6e4), ("all 1e5", torch.float32, 1e5)):
        scaled = {
            k: (v / v.abs().max().clamp_min(1e-30) * scale).to(dtype) if v.is_floating_point() else v
            for k, v in fx.tensors.items()
        }
        yield what, _writer(fx, scaled, fx.configs), {}
    if "cfg.json" in fx.configs and "dtype" in fx.configs["cfg.json"]:  # SAELens: cast to float16 on load
        cfg = {**fx.configs, "cfg.json": {**fx.configs["cfg.json"], "dtype": "float16"}}
        big = {k: v * 1e5 for k, v in fx.tensors.items()}
        yield "cfg dtype float16 with 1e5 weights", _writer(fx, big, cfg), {}
        yield "cfg dtype float16", _writer(fx, fx.tensors, cfg), {}


def _copy_then(valid: Path, change: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        shutil.copytree(valid, folder)
        change(folder)

    return make


def _set_bytes(name: str, data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        path = folder / name
        path.write_bytes(data(path.read_bytes()) if callable(data) else data)

    return change


def _flip(pos: int, mask: int) -> Callable[[bytes], bytes]:
    return lambda b: b[:pos] + bytes([b[pos] ^ mask]) + b[pos + 1 :]


def byte_cases(fx: Fixture, valid: Path) -> Iterator[Case]:
    files = sorted(p.name for p in valid.iterdir())
    for name in files:
        data = (valid / name).read_bytes()
        n = len(data)
        rng = random.Random(f"{fx.reader}/{fx.variant}/{name}")
        yield f"{name} deleted", _copy_then(valid, lambda f, name=name: (f / name).unlink()), {}
        for cut in sorted({0, 1, 2, 8, 64, n // 4, n // 2, 3 * n // 4, n - 1} - {n}):
            yield f"{name} truncated at {cut}", _copy_then(valid, _set_bytes(name, data[:cut])), {}
        positions = rng.sample(range(n), min(n, 16 if fx.primary else 8))
        for i, pos in enumerate(positions):
            mask = 0xFF if i % 2 == 0 else 1 << rng.randrange(8)
            yield f"{name} byte {pos} ^ {mask:#x}", _copy_then(valid, _set_bytes(name, _flip(pos, mask))), {}
        firsts = (
            range(256)
            if (name == fx.weights and fx.pickled and fx.primary)
            else (0x00, 0x0A, 0x22, 0x50, 0x5B, 0x7B, 0x80, 0xFF)
        )
        for b in firsts:
            if name == fx.weights and fx.reader == "saev":  # keep the header: one byte of tensor data
                one = data.partition(b"\n")[0] + b"\n" + bytes([b])
            else:
                one = bytes([b])
            yield f"{name} = one byte {b:#04x}", _copy_then(valid, _set_bytes(name, one)), {}
        if name.endswith(".json"):
            for junk in (b"{}", b"[]", b'"x"', b'{"a":', b"[" * 100_000, b"\xff\xfe{}", b"NaN"):
                yield f"{name} = {junk[:8]!r}", _copy_then(valid, _set_bytes(name, junk)), {}


def payload_cases(fx: Fixture, valid: Path, marker: Path) -> Iterator[Case]:
    """Pickles that create `marker` when fully unpickled, where the weights (or their tensor part) are."""
    evil = Payload(marker)
    if fx.pickled:
        yield "payload inside the state dict", _writer(fx, {**fx.tensors, "evil": evil}, fx.configs), {}
    if fx.reader == "saev":
        head = (valid / fx.weights).read_bytes().partition(b"\n")[0] + b"\n"
    else:
        head = b""
    buf = io.BytesIO()
    torch.save(evil, buf)
    yield (
        "payload as the whole torch file",
        _copy_then(valid, _set_bytes(fx.weights, head + buf.getvalue())),
        {},
    )
    raw = head + pickle.dumps({"encoder.weight": evil}, protocol=2)
    yield "payload as a legacy pickle", _copy_then(valid, _set_bytes(fx.weights, raw)), {}


def option_cases(fx: Fixture, valid: Path) -> Iterator[Case]:
    """SAELens `scaling_factor=` values that are not a positive finite number (and two that are)."""
    if "activation_scaler.json" not in fx.configs:
        return
    for value in (0, -1.0, math.nan, math.inf, "2", True, [2.0], 1e-45, 1e38, 0.5, 3):
        yield f"scaling_factor={value!r}", _copy_then(valid, lambda f: None), {"scaling_factor": value}


# -- running the cases -----------------------------------------------------------------------------
X = acts()


def attempt(tally: Tally, case: str, path: Path, options: dict[str, Any]) -> None:
    """`saekit.load` then encode/decode `X`: a refusal, a finite load, or a failure of this test."""
    tally.tried += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # conversion warnings (unsaved scaling factor, ...) are fine
            sae = saekit.load(path, **options)
            latents = sae.encode(X)
            recon = sae.decode(latents, X)
    except SaekitError:
        tally.refused += 1
        return
    except Exception as exc:  # any other exception type is what this test hunts
        tally.foreign.append(f"{case}: {type(exc).__name__}: {exc}"[:400])
        return
    if bool(latents.isfinite().all()) and bool(recon.isfinite().all()):
        tally.loaded += 1
    else:
        tally.nonfinite.append(case)


def cases(fx: Fixture, valid: Path, marker: Path) -> Iterator[Case]:
    yield "valid", _copy_then(valid, lambda f: None), {}
    yield from config_cases(fx, valid)
    yield from tensor_cases(fx)
    yield from byte_cases(fx, valid)
    yield from payload_cases(fx, valid, marker)
    yield from option_cases(fx, valid)


def run_all(tmp: Path) -> dict[str, Tally]:
    """Every case of every fixture; returns the tallies by reader (the marker is checked by the caller)."""
    marker = tmp / "MARKER-payload-ran"
    tallies: dict[str, Tally] = {}
    for i, fx in enumerate(fixtures(tmp / "base")):
        valid = tmp / f"valid-{i}"
        fx.write(valid, fx.tensors, fx.configs)
        fx.primary = fx.reader not in tallies
        tally = tallies.setdefault(fx.reader, Tally())
        work = tmp / "case"
        for j, (desc, make, options) in enumerate(cases(fx, valid, marker)):
            shutil.rmtree(work, ignore_errors=True)
            make(work)
            case = f"{fx.reader}/{fx.variant}: {desc}"
            target = work / fx.target
            attempt(tally, case, target, {"format": fx.reader, **options})  # the reader itself
            if j % 6 == 0:  # and detection, on a sixth of the cases (its probes read the same files)
                attempt(tally, case + " (detected)", target, options)
            if marker.exists():
                tally.foreign.append(f"{case}: a pickle payload ran (marker file created)")
                marker.unlink()
    return tallies


def summary(tallies: dict[str, Tally]) -> str:
    """The per-reader counts as a table (printed with `pytest -s`, and in failure messages)."""
    total = Tally()
    for t in tallies.values():
        total.tried += t.tried
        total.refused += t.refused
        total.loaded += t.loaded
        total.foreign += t.foreign
        total.nonfinite += t.nonfinite
    rows = [("reader", "tried", "refused", "loaded", "foreign", "non-finite")]
    for reader, t in [*tallies.items(), ("total", total)]:
        rows.append((reader, t.tried, t.refused, t.loaded, len(t.foreign), len(t.nonfinite)))
    return "\n".join(f"{r[0]:<20}" + "".join(f"{v:>11}" for v in r[1:]) for r in rows)


@pytest.fixture()
def one_thread():
    """Thousands of tiny loads: two OpenMP threads stall on every tiny op when the other core is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_mutation_is_refused_or_loads_finite(tmp_path, one_thread):
    ran = tmp_path / "payload-check"
    pickle.loads(pickle.dumps(Payload(ran))).close()
    assert ran.exists(), "the payload must create its marker when fully unpickled, or its check is vacuous"
    tallies = run_all(tmp_path / "cases")
    table = summary(tallies)
    print("\n" + table)
    foreign = [c for t in tallies.values() for c in t.foreign]
    nonfinite = [c for t in tallies.values() for c in t.nonfinite]
    assert not foreign and not nonfinite, (
        f"{len(foreign)} non-saekit exception(s) (payloads that ran included):\n"
        + "\n".join(foreign[:20])
        + f"\n{len(nonfinite)} load(s) whose outputs are NaN/inf:\n"
        + "\n".join(nonfinite[:20])
        + "\n"
        + table
    )
    assert set(tallies) == set(known_formats()), "a reader has no fixture here"
    assert sum(t.tried for t in tallies.values()) >= MIN_CASES, table
    assert all(t.tried >= MIN_PER_READER for t in tallies.values()), table
    assert all(t.loaded >= 1 and t.refused >= 1 for t in tallies.values()), table


# -- the refusals the issue named, pinned with their messages --------------------------------------
@pytest.mark.parametrize(
    ("k", "refused"), [(8.0, None), (8.7, "'k'.*8.7"), ("8", "'k'"), (0, "'k'"), (33, "k=33")]
)
def test_k_is_a_positive_integer_not_above_d_sae_never_rounded(tmp_path, k, refused):
    folder = write_saelens(tmp_path / "s", base_tensors(), architecture="topk", k=k)
    if refused is None:
        assert saekit.load(folder).cfg.k == 8
        return
    with pytest.raises(SAEFormatError, match=f"cfg.json.*{refused}"):
        saekit.load(folder)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.to(torch.int32), r"'encoder.weight' has dtype torch.int32; SAE weights are floating"),
        (lambda t: t > 0, r"'encoder.weight' has dtype torch.bool"),
        (lambda t: t.reshape(-1), r"'encoder.weight' has shape \(256,\); it must be a non-empty matrix"),
    ],
)
@pytest.mark.parametrize("reader", ["gytdau", "openai"])
def test_integer_and_flattened_weights_refused_naming_the_tensor(tmp_path, reader, edit, match):
    state = gytdau_state() if reader == "gytdau" else openai_state()
    state["encoder.weight"] = edit(state["encoder.weight"])
    torch.save(state, tmp_path / "sae.pt")
    with pytest.raises(SAEFormatError, match="sae.pt: tensor " + match):
        saekit.load(tmp_path / "sae.pt", format=reader)


def test_a_corrupt_pickle_is_a_format_error_with_the_unpickler_error_as_cause(tmp_path):
    folder = write_dl(tmp_path / "dl", linear_ae(0), "AutoEncoder")
    (folder / "ae.pt").write_bytes(b"\x86")  # torch's weights-only unpickler raises IndexError on this
    with pytest.raises(SAEFormatError, match="ae.pt.*corrupt or truncated") as info:
        saekit.load(folder)
    assert isinstance(info.value.__cause__, IndexError)


@pytest.mark.parametrize("factor", [0, -2.0, "2", None])
def test_scaling_factor_must_be_a_positive_finite_number(tmp_path, factor):
    folder = write_saelens(
        tmp_path / "s",
        base_tensors(),
        architecture="standard",
        normalize_activations="expected_average_only_in",
    )
    if factor is not None:
        (folder / "activation_scaler.json").write_text(json.dumps({"scaling_factor": factor}))
        with pytest.raises(SAEFormatError, match="activation_scaler.json: scaling_factor must be a positive"):
            saekit.load(folder)
    for bad in (0, math.inf, math.nan):
        with pytest.raises(SAEFormatError, match="scaling_factor argument must be a positive finite number"):
            saekit.load(folder, scaling_factor=bad)


def test_weights_that_overflow_in_use_are_refused_naming_the_tensor(tmp_path):
    sae = build(SAEConfig(d_in=D_IN, d_sae=D_SAE, arch="topk", k=4, dtype="float16"))
    with torch.no_grad():
        sae.W_enc[3, 5] = 60000.0  # finite in float16, but any sizeable input overflows its pre-activation
    sae.save(tmp_path / "half")
    with pytest.raises(SAEFormatError, match="gives NaN/inf latents.*float16.*largest .W_enc. = 6e"):
        saekit.load(tmp_path / "half")
    t = base_tensors()
    t["W_dec"][0, 0] = 3e38  # finite in float32, but no product with it is
    with pytest.raises(SAEFormatError, match="'W_dec' holds a value of magnitude 3e\\+38"):
        saekit.load(write_saelens(tmp_path / "s", t, architecture="standard"))
