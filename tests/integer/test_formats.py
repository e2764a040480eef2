"""The file formats' shared schema and digest (``concrete_qnn.integer.formats``): the layouts
and digests are those written before the redesign, byte for byte."""

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from concrete_qnn import load
from concrete_qnn.deploy import artifacts
from concrete_qnn.exceptions import InvalidParameterError
from concrete_qnn.integer import MAX_LOOKUP_BITS, IntegerModel, OutputHead, require_lookup_bits
from concrete_qnn.integer.formats import (
    FHE_CLIENT,
    MODEL_FILE,
    content_sha256,
    io_from_json,
    io_to_json,
    sha256_matches,
    with_sha256,
)

# A model file written before the redesign (tests/test_fingerprints.py).
SAVED_MODEL = Path(__file__).parents[1] / "fingerprints" / "classifier-l1_budget-2-2-5.npz"


@pytest.fixture(scope="module")
def saved():
    return load(SAVED_MODEL)


def test_content_sha256_hashes_arrays_then_the_canonical_json():
    weight = np.arange(4, dtype=np.int64).reshape(2, 2)
    metadata = {"b": 1, "a": [1.5, None], "sha256": "ignored"}
    canonical = b'{"a":[1.5,null],"b":1}'
    assert content_sha256(metadata) == hashlib.sha256(canonical).hexdigest()
    expected = hashlib.sha256(b'["w", "<i8", [2, 2]]' + weight.tobytes() + canonical)
    assert content_sha256(metadata, {"w": weight}) == expected.hexdigest()
    signed = with_sha256({"b": 1, "a": [1.5, None]})
    assert list(signed) == ["b", "a", "sha256"] and sha256_matches(signed)
    assert not sha256_matches({**signed, "b": 2})
    with pytest.raises(ValueError):
        content_sha256({"x": float("nan")})
    assert not sha256_matches({**signed, "x": float("nan")})


def test_a_model_file_written_before_the_redesign_is_rewritten_byte_for_byte(saved, tmp_path):
    saved.save(tmp_path / "again.npz")
    with zipfile.ZipFile(SAVED_MODEL) as before, zipfile.ZipFile(tmp_path / "again.npz") as after:
        assert before.namelist() == after.namelist()
        for name in before.namelist():
            assert before.read(name) == after.read(name), name
        text = np.lib.format.read_array(after.open("metadata.npy")).tobytes()
    assert list(json.loads(text)) == [
        "format",
        "format_version",
        "config",
        "input_scale",
        "n_layers",
        "lsbs_to_remove",
        "task",
        "classes",
        "target_ndim",
        "target_mean",
        "target_std",
        "feature_names",
        "certificate",
        "sha256",
    ]


def _regressor(model: IntegerModel) -> IntegerModel:
    n_outputs = len(model.scales[-1])
    head = OutputHead(
        "regression", None, 2, np.arange(1.0, 1 + n_outputs), np.linspace(0.5, 2, n_outputs)
    )
    return IntegerModel(
        model.config,
        model.input_scale,
        model.weights,
        model.biases,
        model.scales,
        model.tables,
        model.table_offsets,
        head,
        lsbs_to_remove=model.lsbs_to_remove,
    )


# SHA-256 of the client.json that the code before the redesign wrote for each model.
CLIENT_JSON_SHA256 = {
    "plain": "668f7d0229c34a7accdd95046e661c83acd48d92b1f8949d8e46e5094fa9d21f",
    "standardized": "9f9125f3622a646389e86bb7abe4820764d73ce068d83ba842d0a9ca450c32a9",
    "regressor": "4836ca814e23e68ca27d6230657f34bfd9ba7623f1542d34393080bd8ff7c66e",
}


@pytest.mark.parametrize("which", list(CLIENT_JSON_SHA256))
def test_client_json_is_written_as_before_and_reads_back(saved, tmp_path, which):
    n = saved.n_features_in
    model = {
        "plain": saved,
        "standardized": saved.with_standardization(
            np.arange(n) * 0.5, np.arange(1, n + 1) * 1.5, feature_names=[f"f{i}" for i in range(n)]
        ),
        "regressor": _regressor(saved),
    }[which]
    # version 3: version 4's layout less the entries it added
    layout = io_to_json(model.io)
    del layout["input"]["n_columns"], layout["input"]["columns"]
    del layout["output"]["classes_dtype"]
    data = {
        **FHE_CLIENT.header(),
        "format_version": 3,
        "packages": {"x": "1"},
        "circuit": "c" * 64,
        **layout,
        "output_offsets": [1, 2],
    }
    path = tmp_path / "client.json"
    artifacts._write_json(path, data)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CLIENT_JSON_SHA256[which]
    FHE_CLIENT.check(json.loads(path.read_text()))
    io = io_from_json(json.loads(path.read_text()))
    assert io_to_json(io) == io_to_json(model.io)
    assert list(io_to_json(io)) == ["input", "output", "feature_names"]
    assert list(io_to_json(io)["input"])[-2:] == ["n_columns", "columns"]
    assert list(io_to_json(io)["output"]) == [
        "scales",
        "task",
        "classes",
        "target_ndim",
        "target_mean",
        "target_std",
        "classes_dtype",
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: {**m, "format": "other"}, "does not name the format 'concrete-qnn integer"),
        (lambda m: {**m, "format_version": 4}, "has format version 4; this concrete-qnn reads"),
        (lambda m: {**m, "format_version": True}, "has format version True"),
        (lambda m: {k: v for k, v in m.items() if k != "task"}, "lacks the entry 'task'"),
        (
            lambda m: {**m, "config": {**m["config"], "n_w_bits": 0}, "target_ndim": 3},
            "entry 'target_ndim' must be 1 or 2",  # this level first, then inside config
        ),
        (
            lambda m: {**m, "config": {**m["config"], "n_w_bits": 0}},
            "entry 'n_w_bits' must be an integer from 1 to 64, got 0",
        ),
    ],
)
def test_the_model_file_schema_names_the_first_problem(edit, message):
    with zipfile.ZipFile(SAVED_MODEL) as archive:
        metadata = json.loads(np.lib.format.read_array(archive.open("metadata.npy")).tobytes())
    MODEL_FILE.check(metadata)
    with pytest.raises(ValueError, match=message):
        MODEL_FILE.check(edit(metadata))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda j: {**j, "input": [1]}, "entry 'input' must be an object"),
        (lambda j: {**j, "output": {**j["output"], "task": "ranking"}}, "entry 'task' must be"),
        (lambda j: {**j, "feature_names": ["a", "a"]}, "entry 'feature_names' must be null or"),
        (lambda j: {**j, "input": {**j["input"], "scale": 0.0}}, "input_scale must be positive"),
    ],
)
def test_a_client_layout_is_checked_by_its_schema_then_by_model_io(saved, edit, message):
    layout = io_to_json(saved.io)
    with pytest.raises(ValueError, match=message):
        io_from_json(edit(layout))


def test_the_lookup_limit_is_one_check_with_one_message(saved):
    require_lookup_bits(MAX_LOOKUP_BITS, "fc0's table")
    with pytest.raises(InvalidParameterError) as error:
        require_lookup_bits(MAX_LOOKUP_BITS + 1, "fc0's table")
    assert str(error.value) == (
        "fc0's table would read 17 bits of its accumulator (2^17 entries per neuron); tables "
        "read at most 16 bits: set rounding_threshold_bits to at most 16"
    )
    wide = np.zeros((saved.tables[0].shape[0], 2**MAX_LOOKUP_BITS + 1), dtype=np.int64)
    with pytest.raises(InvalidParameterError, match=r"tables\[0\] would read 17 bits"):
        IntegerModel(
            saved.config,
            saved.input_scale,
            saved.weights,
            saved.biases,
            saved.scales,
            [wide, *saved.tables[1:]],
            saved.table_offsets,
            saved.head,
            lsbs_to_remove=saved.lsbs_to_remove,
        )
