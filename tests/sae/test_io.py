"""Native format: bit-exact round trips, raw-activation behaviour after loading, and every error case."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import saekit
from saekit.errors import SAEFormatError, ShapeError
from saekit.sae.init import fit_input_scale_, init_b_dec_
from saekit.sae.io import CONFIG_FILE, SCHEMA_VERSION, WEIGHTS_FILE, load_sae

from .conftest import make_sae


def _trained_ish(arch, **kw):
    """An SAE whose every tensor differs from a fresh init (so a lossy round trip would show)."""
    sae = make_sae(arch, normalization="expected_norm", **kw)
    x = torch.randn(64, 8) * 13.0 + 2.0
    fit_input_scale_(sae, x)
    init_b_dec_(sae, x)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        if arch == "batchtopk":
            sae.train()(x)  # estimates the inference threshold
            assert sae.threshold.item() > 0
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.randn(16) * 0.1 - 3)
    return sae.eval(), x


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64", "float16"])
def test_round_trip_bit_exact(arch, dtype, tmp_path):
    sae, _ = _trained_ish(arch, dtype=dtype)
    sae.save(tmp_path / "sae")
    loaded = saekit.load(tmp_path / "sae")
    assert type(loaded) is type(sae)
    assert loaded.cfg == sae.cfg
    a, b = sae.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name
    assert "input_scale" in a and a["input_scale"].item() != 1.0
    if arch == "batchtopk":
        assert loaded.threshold.item() == sae.threshold.item() > 0
    if arch == "jumprelu":
        assert torch.equal(loaded.threshold, sae.threshold)


def test_loaded_sae_with_normalisation_reconstructs_raw_activations(arch, tmp_path):
    sae, x = _trained_ish(arch)
    sae.save(tmp_path / "s")
    loaded = saekit.load(tmp_path / "s").eval()
    raw = torch.randn(10, 8) * 13.0 + 2.0
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(raw), sae.reconstruct(raw), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode(raw), sae.encode(raw), rtol=0, atol=0)
        # and the saved factor matters: without it the same weights give different reconstructions
        loaded.input_scale.fill_(1.0)
        assert not torch.allclose(loaded.reconstruct(raw), sae.reconstruct(raw))


def test_saved_files_and_layout(tmp_path):
    sae, _ = _trained_ish("topk", d_sae=16)
    folder = sae.save(tmp_path / "nested" / "sae")
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temp files left
    meta = json.loads((folder / CONFIG_FILE).read_text())
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["config"]["arch"] == "topk" and meta["config"]["d_in"] == 8
    tensors = load_file(str(folder / WEIGHTS_FILE))
    assert tensors["W_enc"].shape == (8, 16) and tensors["W_dec"].shape == (16, 8)
    assert tensors["input_scale"].shape == ()
    # saving again over an existing folder replaces it
    with torch.no_grad():
        sae.b_dec.fill_(0.25)
    sae.save(folder)
    assert (saekit.load(folder).b_dec == 0.25).all()


def test_load_to_device_argument(tmp_path):
    sae, _ = _trained_ish("relu")
    sae.save(tmp_path / "s")
    loaded = saekit.load(tmp_path / "s", device="cpu")
    assert loaded.device.type == "cpu"


# -- error cases ------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    sae, _ = _trained_ish("relu")
    return sae.save(tmp_path / "sae")


def _load_error(folder) -> str:
    """The native loader's message; `saekit.load` (format detection first) must fail cleanly too."""
    with pytest.raises(SAEFormatError) as ei:
        load_sae(folder)
    with pytest.raises(SAEFormatError) as top:
        saekit.load(folder)
    assert str(folder.name) in str(top.value) or str(folder) in str(top.value)
    return str(ei.value)


def test_missing_folder(tmp_path):
    msg = _load_error(tmp_path / "nope")
    assert "nope" in msg and "does not exist" in msg


def test_path_is_a_file(tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    assert "is a file" in _load_error(f)


def test_missing_config(saved):
    (saved / CONFIG_FILE).unlink()
    msg = _load_error(saved)
    assert CONFIG_FILE in msg and "not a saekit SAE folder" in msg


def test_missing_weights_file(saved):
    (saved / WEIGHTS_FILE).unlink()
    msg = _load_error(saved)
    assert "missing weights file" in msg and WEIGHTS_FILE in msg


@pytest.mark.parametrize("keep", [0.5, -1, 8, 20])
def test_truncated_safetensors(saved, keep):
    path = saved / WEIGHTS_FILE
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:n])
    msg = _load_error(saved)
    assert WEIGHTS_FILE in msg and "corrupt or truncated" in msg and f"({n} bytes)" in msg


@pytest.mark.parametrize(
    "garbage", [b"", b"\x00" * 3, b"not a safetensors file at all" * 10, b"\xff" * 8 + b"{}" * 50]
)
def test_garbage_weights(saved, garbage):
    (saved / WEIGHTS_FILE).write_bytes(garbage)
    msg = _load_error(saved)
    assert WEIGHTS_FILE in msg and "corrupt" in msg


@pytest.mark.parametrize("text", ["{not json", "", '{"config": {}', "\udcff"])
def test_invalid_json(saved, text):
    (saved / CONFIG_FILE).write_bytes(text.encode("utf-8", "surrogateescape"))
    msg = _load_error(saved)
    assert CONFIG_FILE in msg and "not valid JSON" in msg


@pytest.mark.parametrize(
    "content",
    [
        [1, 2],
        {"config": {}},
        {"schema_version": 1},
        "just a string",
        {"schema_version": 1, "config": [1, 2]},
        {"schema_version": 1, "config": None},
    ],
)
def test_json_without_the_expected_keys(saved, content):
    (saved / CONFIG_FILE).write_text(json.dumps(content))
    assert CONFIG_FILE in _load_error(saved)


def _edit_config(folder, **changes):
    path = folder / CONFIG_FILE
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "schema_version":
            meta[key] = value
        else:
            meta["config"][key] = value
    path.write_text(json.dumps(meta))


def test_config_disagrees_with_tensor_shapes(saved):
    _edit_config(saved, d_sae=20)
    msg = _load_error(saved)
    assert "'W_enc'" in msg and "(8, 16)" in msg and "(8, 20)" in msg  # names tensor, found, expected


def test_config_d_in_disagrees(saved):
    _edit_config(saved, d_in=9)
    msg = _load_error(saved)
    assert "(8, 16)" in msg and "(9, 16)" in msg


def test_unknown_architecture(saved):
    _edit_config(saved, arch="transcoder")
    msg = _load_error(saved)
    assert "transcoder" in msg and "topk" in msg


def test_config_names_a_different_known_architecture(saved):
    _edit_config(saved, arch="gated")  # weights lack r_mag / b_mag
    msg = _load_error(saved)
    assert "r_mag" in msg or "b_mag" in msg


def test_newer_schema_version(saved):
    _edit_config(saved, schema_version=SCHEMA_VERSION + 1)
    msg = _load_error(saved)
    assert f"schema_version {SCHEMA_VERSION + 1}" in msg and "upgrade" in msg


@pytest.mark.parametrize("version", [0, "1", None, 1.5])
def test_invalid_schema_version(saved, version):
    _edit_config(saved, schema_version=version)
    assert "schema_version" in _load_error(saved)


@pytest.mark.parametrize("bad", ["eight", 8.0, None, float("nan"), [8]])
def test_invalid_config_d_in(saved, bad):
    _edit_config(saved, d_in=bad)
    msg = _load_error(saved)
    assert CONFIG_FILE in msg and "d_in" in msg


def test_invalid_config_value(saved):
    _edit_config(saved, d_in=8, dtype="int4")
    assert "int4" in _load_error(saved)


def _forget_record(folder):
    """Drop the weights record, as in a folder saved before checksums: only the tensor checks remain."""
    path = folder / CONFIG_FILE
    meta = json.loads(path.read_text())
    meta.pop("files"), meta.pop("pair")
    path.write_text(json.dumps(meta))


def test_missing_and_extra_and_non_finite_tensors(saved):
    _forget_record(saved)
    path = saved / WEIGHTS_FILE
    good = load_file(str(path))
    t = dict(good)
    del t["b_enc"]
    save_file(t, str(path))
    assert "b_enc" in _load_error(saved)
    t = dict(good, mystery=torch.zeros(3))
    save_file(t, str(path))
    assert "mystery" in _load_error(saved)
    t = dict(good)
    t["W_dec"] = t["W_dec"].clone()
    t["W_dec"][0, 0] = float("nan")
    save_file(t, str(path))
    msg = _load_error(saved)
    assert "W_dec" in msg and "NaN" in msg


def test_encode_with_wrong_d_in_after_load(saved):
    sae = saekit.load(saved)
    with pytest.raises(ShapeError) as ei:
        sae.encode(torch.randn(2, 5, 12))
    assert "(2, 5, 12)" in str(ei.value) and "d_in=8" in str(ei.value)


def test_load_skips_random_initialisation(saved, monkeypatch):
    """Every tensor comes from the file, so loading must not spend time (or memory) on a random init."""
    from saekit.sae import init

    def no_init(*args, **kwargs):
        raise AssertionError("load_sae ran a random initialisation")

    monkeypatch.setattr(init, "random_unit_rows", no_init)
    monkeypatch.setattr(init, "orthonormal_blocks", no_init)
    loaded = load_sae(saved)
    assert loaded.W_dec.device.type == "cpu" and torch.isfinite(loaded.W_dec).all()


def test_save_after_dtype_cast_records_the_real_dtype(tmp_path):
    sae, x = _trained_ish("jumprelu")
    sae64 = sae.to(torch.float64)
    sae64.save(tmp_path / "s")
    loaded = load_sae(tmp_path / "s")
    assert loaded.cfg.dtype == "float64" and loaded.dtype == torch.float64
    for name, t in sae64.state_dict().items():
        if name != "input_scale":
            assert torch.equal(loaded.state_dict()[name], t), name
    torch.testing.assert_close(loaded.reconstruct(x), sae64.reconstruct(x))


# -- the weights + config pair (issue 14 item 5) ------------------------------------------------------


def test_config_records_size_and_sha256_of_the_weights(saved):
    import hashlib

    meta = json.loads((saved / CONFIG_FILE).read_text())
    data = (saved / WEIGHTS_FILE).read_bytes()
    assert meta["files"][WEIGHTS_FILE] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    from safetensors import safe_open

    with safe_open(str(saved / WEIGHTS_FILE), framework="pt") as fh:
        assert fh.metadata()["pair"] == meta["pair"]


def test_nan_written_in_place_same_size_is_refused_with_the_fix(saved):
    """One weight overwritten in place with NaN bytes: same size, so only the checksum sees it."""
    path = saved / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header : header + 4] = bytes.fromhex("0000c07f")  # float32 NaN over the first tensor's first value
    path.write_bytes(bytes(data))
    assert path.stat().st_size == len(data)
    msg = _load_error(saved)
    assert "sha256" in msg and "overwritten in place" in msg and "re-save" in msg


def test_flipped_bytes_same_size_are_refused(saved):
    path = saved / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a finite weight with one flipped mantissa bit: no NaN check could see it
    path.write_bytes(bytes(data))
    assert "sha256" in _load_error(saved)


def test_truncated_pair_names_both_sizes(saved):
    path = saved / WEIGHTS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    msg = _load_error(saved)
    assert f"{len(data) - 100} bytes" in msg and f"recorded {len(data)} bytes" in msg


def test_crash_between_the_two_writes_is_detected(tmp_path, monkeypatch):
    """New weights written, then the process dies before config.json: the old config must not pair
    silently with the new weights (same shapes, different numbers)."""
    from saekit.sae import io

    sae, _ = _trained_ish("relu")
    folder = sae.save(tmp_path / "s")
    with torch.no_grad():
        sae.W_dec.mul_(2.0)

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed between the two files")

    monkeypatch.setattr(io, "write_json_atomic", die)
    with pytest.raises(KeyboardInterrupt):
        sae.save(folder)
    monkeypatch.undo()
    msg = _load_error(folder)
    assert "different save" in msg


def test_verify_hashes_even_large_files(saved, monkeypatch):
    """Above the hash-on-open size only size + pair token are checked on open; verify_sae hashes."""
    from saekit.sae import integrity
    from saekit.sae.io import verify_sae

    path = saved / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    monkeypatch.setattr(integrity, "HASH_ON_OPEN_BYTES", 10)
    load_sae(saved)  # fast path: size and token match, bytes not hashed
    with pytest.raises(SAEFormatError, match="sha256"):
        verify_sae(saved)


def test_fields_added_later_are_written_only_when_used(tmp_path):
    """An SAE that uses no new feature saves a config.json earlier saekit versions can read."""
    sae, _ = _trained_ish("relu")
    meta = json.loads((sae.save(tmp_path / "s") / CONFIG_FILE).read_text())
    assert "skip_connection" not in meta["config"]
    assert not {"tower", "source_format", "source_name"} & set(meta["config"]["provenance"])
    skip = make_sae("topk", skip_connection=True)
    meta = json.loads((skip.save(tmp_path / "k") / CONFIG_FILE).read_text())
    assert meta["config"]["skip_connection"] is True
    assert saekit.load(tmp_path / "k").cfg == skip.cfg
