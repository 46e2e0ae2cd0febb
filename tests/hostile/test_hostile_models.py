"""Hostile model files (issue 15 items 2, 3, 7, 8, 9) through the commands that read a model:
each is refused with exit 2 by the one loader, eideploy.train.checkpoint, naming the field."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from _hostile import assert_refused, invoke, run_guarded, snapshot

from eideploy.train.checkpoint import MAX_CHECKPOINT_BYTES, MAX_TENSOR_ELEMENTS


def _save(path: Path, record) -> Path:
    torch.save(record, path)
    return path


def _refused(tmp_path: Path, model: Path, *needles: str, command: str = "inspect") -> None:
    """``command`` on ``model`` exits 2 with ``needles`` in its message and writes nothing."""
    before = snapshot(tmp_path)
    args = {"inspect": ["inspect", model], "evaluate": ["evaluate", model],
            "export": ["export", model, "-o", tmp_path / "out"],
            "validate": ["validate", model, tmp_path / "out"]}[command]
    code, output = invoke(args, tmp_path)
    assert_refused(code, output, *needles)
    assert snapshot(tmp_path) == before  # nothing written, no export directory, no runs/


def test_the_untampered_record_is_accepted(tmp_path, record):
    """The control: the same file, untouched, is read (so each refusal below is its tamper's)."""
    model = _save(tmp_path / "model.pt", record)
    code, output = invoke(["inspect", model], tmp_path)
    assert code == 0, output


# ------------------------------------------------------------------ not a regular file: no hang
@pytest.mark.parametrize("command", ["inspect", "validate"])
def test_a_fifo_model_is_refused_without_blocking(tmp_path, command):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    args = ["inspect", fifo] if command == "inspect" else ["validate", fifo, tmp_path / "out"]
    code, output = run_guarded(args, tmp_path)
    assert_refused(code, output, "model.pt", "not a regular file")
    assert not (tmp_path / "out").exists()


def test_a_model_linked_to_dev_zero_is_refused_without_reading(tmp_path):
    link = tmp_path / "model.pt"
    link.symlink_to("/dev/zero")
    code, output = run_guarded(["inspect", link], tmp_path)
    assert_refused(code, output, "model.pt", "not a regular file")


def test_a_directory_named_like_a_model_is_refused(tmp_path):
    (tmp_path / "m.pt").mkdir()
    _refused(tmp_path, tmp_path / "m.pt", "m.pt", "not a regular file", command="export")


def test_an_oversized_file_is_refused_by_its_size_before_it_is_read(tmp_path):
    big = tmp_path / "model.pt"
    with open(big, "wb") as fh:  # sparse: no disk is used
        fh.truncate(MAX_CHECKPOINT_BYTES + 1)
    _refused(tmp_path, big, "model.pt", "MiB limit")


# ------------------------------------------------------------------ container damage
def test_random_bytes_are_not_a_checkpoint(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(os.urandom(4096))
    _refused(tmp_path, bad, "model.pt", "cannot be read")


def test_a_truncated_checkpoint_is_refused(tmp_path, record):
    model = _save(tmp_path / "model.pt", record)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    _refused(tmp_path, model, "model.pt", command="export")


def test_a_bit_flipped_tensor_fails_the_crc_check(tmp_path, record):
    model = _save(tmp_path / "model.pt", record)
    with zipfile.ZipFile(model) as archive:
        info = next(m for m in archive.infolist() if "/data/" in m.filename and m.file_size > 64)
    raw = bytearray(model.read_bytes())
    extra = int.from_bytes(raw[info.header_offset + 28: info.header_offset + 30], "little")
    start = info.header_offset + 30 + len(info.filename.encode()) + extra
    raw[start + 5] ^= 0x10  # one bit of one float: torch itself would load it silently
    model.write_bytes(bytes(raw))
    _refused(tmp_path, model, "model.pt", "CRC")


# ------------------------------------------------------------------ code execution
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["inspect", "evaluate", "export", "validate"])
def test_a_pickle_payload_is_never_executed(tmp_path, record, command):
    marker = tmp_path / "executed"
    record["metrics"] = {"x": _Payload(marker)}
    model = _save(tmp_path / "model.pt", record)
    _refused(tmp_path, model, "model.pt", "not executed", command=command)
    assert not marker.exists()


def test_a_bare_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    model = tmp_path / "model.pt"
    model.write_bytes(pickle.dumps(_Payload(marker)))
    _refused(tmp_path, model, "model.pt", "refused to load", "not executed")
    assert not marker.exists()


# ------------------------------------------------------------------ tensors that allocate
def _replace(record, key: str, value: torch.Tensor):
    record["state_dict"][key] = value
    return record


def test_a_zero_stride_tensor_declaring_a_terabyte_is_refused(tmp_path, record):
    giant = torch.zeros(1).expand(1 << 20, 1 << 20)  # one stored float, 10^12 declared elements
    model = _save(tmp_path / "model.pt", _replace(record, "layers.1.weight_ee", giant))
    assert model.stat().st_size < 1 << 20
    _refused(tmp_path, model, "layers.1.weight_ee", "elements")


def test_a_zero_stride_weight_of_the_right_shape_is_refused(tmp_path, record):
    shape = record["state_dict"]["layers.1.weight_ee"].shape
    model = _save(tmp_path / "model.pt",
                  _replace(record, "layers.1.weight_ee", torch.ones(1, 1).expand(*shape)))
    _refused(tmp_path, model, "layers.1.weight_ee", "strides")


def test_an_overlapping_tensor_is_refused(tmp_path, record):
    w = record["state_dict"]["layers.1.weight_ee"]
    overlapping = torch.as_strided(w.flatten().clone(), w.shape, (1, 1))
    model = _save(tmp_path / "model.pt", _replace(record, "layers.1.weight_ee", overlapping))
    _refused(tmp_path, model, "layers.1.weight_ee", "strides")


def test_too_many_tensors_are_refused_by_count(tmp_path, record, monkeypatch):
    from eideploy.train import checkpoint

    monkeypatch.setattr(checkpoint, "MAX_TENSORS", 50)  # the rule, not the constant, is tested
    record["metrics"] = {"t": [torch.zeros(1) for _ in range(60)]}
    model = _save(tmp_path / "model.pt", record)
    _refused(tmp_path, model, "model.pt", "tensors, over the limit of 50")


def test_an_architecture_of_a_billion_units_is_refused_before_it_is_built(tmp_path, record):
    record["architecture"]["kwargs"]["widths"] = [10**9]
    _refused(tmp_path, _save(tmp_path / "model.pt", record), "architecture.kwargs.widths",
             "1000000000")


def test_a_float_width_is_refused(tmp_path, record):
    record["architecture"]["kwargs"]["widths"] = [1e9]
    _refused(tmp_path, _save(tmp_path / "model.pt", record), "architecture.kwargs.widths")


def test_deep_nesting_is_refused(tmp_path, record):
    deep: list = []
    for _ in range(200):
        deep = [deep]
    record["metrics"] = {"deep": deep}
    _refused(tmp_path, _save(tmp_path / "model.pt", record), "nested")


# ------------------------------------------------------------------ silent acceptance (item 9)
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_weights_of_a_wrong_dtype_are_refused_not_cast(tmp_path, record, dtype):
    w = record["state_dict"]["layers.1.weight_ee"]
    model = _save(tmp_path / "model.pt", _replace(record, "layers.1.weight_ee", w.to(dtype)))
    _refused(tmp_path, model, "layers.1.weight_ee", str(dtype), command="export")


@pytest.mark.parametrize("value", [-1.0, 1e30, 0.5])
def test_masks_outside_zero_and_one_are_refused(tmp_path, record, value):
    mask = record["state_dict"]["layers.1.mask_ee"].clone()
    mask[0, 0] = value
    model = _save(tmp_path / "model.pt", _replace(record, "layers.1.mask_ee", mask))
    _refused(tmp_path, model, "layers.1.mask_ee", "0 and 1")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_biases_are_refused(tmp_path, record, value):
    bias = record["state_dict"]["layers.1.bias"].clone()
    bias[3] = value
    model = _save(tmp_path / "model.pt", _replace(record, "layers.1.bias", bias))
    _refused(tmp_path, model, "layers.1.bias", "NaN or infinite", command="export")


@pytest.mark.parametrize("field, value", [("tau", float("nan")), ("v_threshold", 0.0),
                                          ("theta_i", 0.0), ("eps", -1.0)])
def test_options_out_of_range_are_refused(tmp_path, record, field, value):
    record["options"][field] = value
    _refused(tmp_path, _save(tmp_path / "model.pt", record), "options", field)


def test_negative_constrained_weights_are_refused(tmp_path, record):
    w = record["state_dict"]["layers.1.weight_ee"].clone()
    w[0, 0] = -1.0
    model = _save(tmp_path / "model.pt", _replace(record, "layers.1.weight_ee", w))
    _refused(tmp_path, model, "weight_ee", "Dale")


@pytest.mark.parametrize("field, value, needle", [
    ("format", "something-else", "'format'"), ("format_version", 99, "format_version"),
    ("state_dict", [1, 2], "'state_dict'"), ("architecture", {"name": 3}, "'architecture'"),
    ("options", "fast", "'options'")])
def test_malformed_fields_are_named(tmp_path, record, field, value, needle):
    record[field] = value
    _refused(tmp_path, _save(tmp_path / "model.pt", record), needle)


# ------------------------------------------------------------------ terminal safety (item 7)
def test_escape_sequences_in_a_checkpoint_never_reach_the_terminal(tmp_path, record):
    record["architecture"]["name"] = "ei-mlp\x1b[2J\x1b]0;owned\x07"
    model = _save(tmp_path / "model.pt", record)
    _refused(tmp_path, model, "model.pt", "\\x1b[2J")  # escaped, printed as text


def test_torch_save_of_a_buffer_is_what_the_tests_write():
    """The files above are torch's own format (zip), as a user would hand them over."""
    buf = io.BytesIO()
    torch.save({"a": torch.zeros(2)}, buf)
    assert zipfile.is_zipfile(io.BytesIO(buf.getvalue()))
    assert MAX_TENSOR_ELEMENTS < (1 << 40)
