"""Damaged model files: each is refused with one clear ModelFileError, or loads unchanged.

A model file that was flipped, truncated, replaced or edited either raises
``ModelFileError`` (a ``ValueError``) saying it is not a valid model (the CLI: one line, exit
status 2) or loads and predicts exactly as the original.
"""

import collections
import io
import json
import struct
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concrete_qnn import QNNClassifier, load
from concrete_qnn.cli import main
from concrete_qnn.exceptions import ModelFileError
from concrete_qnn.integer import ModelIO, OutputHead

INVALID = "is not a valid concrete-qnn model file"


# ---------------------------------------------------------------------- model files
class Saved(tuple):
    """(file bytes, integer model, inputs): short in hypothesis' failure reports."""

    def __repr__(self):
        return f"<a saved iris model, {len(self[0])} bytes>"


@pytest.fixture(scope="module")
def saved(iris, tmp_path_factory):
    """A small iris model's file bytes, the model, and inputs to compare predictions on."""
    X, y = iris
    model = QNNClassifier(random_state=0, max_epochs=2).fit(X, y)
    path = tmp_path_factory.mktemp("saved") / "iris.npz"
    model.save(path)
    wide = np.random.default_rng(0).normal(scale=3.0, size=(200, 4))
    return Saved((path.read_bytes(), model.integer_model_, np.vstack([X, wide])))


def zip_structure_offsets(data: bytes) -> list[int]:
    """Byte offsets of the zip local headers and central directory (not the member data)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    offsets, data_end = [], 0
    for info in infos:
        start = info.header_offset
        name_length, extra_length = struct.unpack("<HH", data[start + 26 : start + 30])
        data_start = start + 30 + name_length + extra_length
        offsets += range(start, data_start)
        data_end = max(data_end, data_start + info.compress_size)
    return offsets + list(range(data_end, len(data)))


def assert_refused_or_identical(path, original, X) -> str:
    """The rule every damaged file obeys; returns which way it went."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = load(path)
    except ModelFileError as error:
        assert INVALID in str(error), error
        return "refused"
    np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))
    assert loaded.certificate.rows() == original.certificate.rows()
    return "identical"


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_single_byte_change_is_refused_or_harmless(saved, tmp_path_factory, data):
    contents, original, X = saved
    structure = zip_structure_offsets(contents)
    position = data.draw(
        st.one_of(st.integers(0, len(contents) - 1), st.sampled_from(structure)), "position"
    )
    value = data.draw(st.integers(0, 255).filter(lambda v: v != contents[position]), "value")
    damaged = bytearray(contents)
    damaged[position] = value
    path = tmp_path_factory.getbasetemp() / "flipped.npz"
    path.write_bytes(bytes(damaged))
    assert_refused_or_identical(path, original, X)


@settings(max_examples=100, deadline=None)
@given(length=st.integers(0, 10_000))
def test_every_truncation_is_refused(saved, tmp_path_factory, length):
    contents, _, _ = saved
    path = tmp_path_factory.getbasetemp() / "truncated.npz"
    path.write_bytes(contents[: length % len(contents)])
    with pytest.raises(ModelFileError, match=INVALID):
        load(path)


@pytest.mark.slow
def test_inverted_bytes_are_refused_or_harmless(saved, tmp_path):
    """The issue's sweep (a byte XOR 0xFF) over every zip header and directory byte and every
    4th byte of compressed data: on main, zlib.error, NotImplementedError and
    tokenize.TokenError escaped from hundreds of these."""
    contents, original, X = saved
    structure = zip_structure_offsets(contents)
    positions = sorted(set(structure) | set(range(0, len(contents), 4)))
    outcomes = collections.Counter()
    for position in positions:
        damaged = bytearray(contents)
        damaged[position] ^= 0xFF
        (tmp_path / "inverted.npz").write_bytes(bytes(damaged))
        try:
            outcomes[assert_refused_or_identical(tmp_path / "inverted.npz", original, X)] += 1
        except Exception as error:
            raise AssertionError(f"byte {position}: {type(error).__name__}: {error}") from error
    assert outcomes["refused"] > len(positions) // 2, outcomes


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "contents",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"age,income\n1,2\n", id="csv"),
        pytest.param(npz_bytes(a=np.arange(3)), id="npz-without-metadata"),
        pytest.param(npz_bytes(metadata=np.array([{"a": 1}], dtype=object)), id="pickle"),
        pytest.param(npz_bytes(metadata=np.frombuffer(b"[1, 2]", np.uint8)), id="json-list"),
        pytest.param(npz_bytes(metadata=np.frombuffer(b"\xff\xfe", np.uint8)), id="not-utf8"),
        pytest.param(npz_bytes(metadata=np.frombuffer(b"[" * 10**5, np.uint8)), id="deep-json"),
        pytest.param(npz_bytes(metadata=np.frombuffer(b'{"a": 1}', np.uint8)), id="json-other"),
    ],
)
def test_foreign_files_are_refused(tmp_path, contents):
    (tmp_path / "foreign.npz").write_bytes(contents)
    with pytest.raises(ModelFileError, match=INVALID):
        load(tmp_path / "foreign.npz")


def edit_metadata(contents: bytes, edit) -> bytes:
    """The file with ``edit(arrays, metadata)`` applied to its arrays and JSON."""
    with np.load(io.BytesIO(contents), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    stored = arrays["metadata"]
    metadata = json.loads(stored.tobytes())
    edit(arrays, metadata)
    if arrays["metadata"] is stored:  # unless the edit replaced the metadata array itself
        arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    return npz_bytes(**arrays)


def setter(key, value):
    """An edit that sets ``metadata[key]`` (``key`` may be a path like ``config.n_w_bits``)."""

    def edit(arrays, metadata):
        *parents, last = key.split(".")
        for parent in parents:
            metadata = metadata[parent]
        metadata[last] = value

    return edit


def deleter(key):
    def edit(arrays, metadata):
        del metadata[key]

    return edit


def array_setter(name, make):
    """An edit that sets the array ``name`` to ``make(current array or None)``."""

    def edit(arrays, metadata):
        arrays[name] = make(arrays.get(name))

    return edit


METADATA_EDITS = {
    "n_layers as a string": setter("n_layers", "3"),
    "n_layers as a list": setter("n_layers", [3]),
    "n_layers as a float": setter("n_layers", 3.0),
    "n_layers as null": setter("n_layers", None),
    "n_layers too small": setter("n_layers", 2),
    "n_layers zero": setter("n_layers", 0),
    "n_layers negative": setter("n_layers", -1),
    "n_layers huge": setter("n_layers", 10**30),
    "classes too short": setter("classes", [0, 1]),
    "classes too long": setter("classes", [0, 1, 2, 3]),
    "classes nested": setter("classes", [[0], [1], [2]]),
    "classes ragged": setter("classes", [[0, 1], [2], 3]),
    "classes as a string": setter("classes", "abc"),
    "classes as a dict": setter("classes", {"0": 0, "1": 1, "2": 2}),
    "classes of mixed types": setter("classes", [0, "one", 2]),
    "classes repeated": setter("classes", [0, 1, 1]),
    "classes null": setter("classes", None),
    "task unknown": setter("task", "clustering"),
    "task as a list": setter("task", ["classification"]),
    "target_ndim as a string": setter("target_ndim", "2"),
    "target_ndim 3": setter("target_ndim", 3),
    "target_mean as a list": setter("target_mean", [0.0]),
    "target_mean null": setter("target_mean", None),
    "target_mean as a bool": setter("target_mean", True),
    "target_std negative": setter("target_std", -1.0),
    "target_std as a string": setter("target_std", "1"),
    "input_scale negative": setter("input_scale", -0.1),
    "input_scale as a string": setter("input_scale", "0.1"),
    "input_scale as a list": setter("input_scale", [0.1]),
    "input_scale NaN": setter("input_scale", float("nan")),
    "config as a list": setter("config", [3, 3, 8, True, False]),
    "config without n_w_bits": lambda arrays, metadata: metadata["config"].pop("n_w_bits"),
    "n_w_bits as a string": setter("config.n_w_bits", "3"),
    "n_w_bits as a float": setter("config.n_w_bits", 3.5),
    "n_w_bits huge": setter("config.n_w_bits", 100),
    "n_a_bits negative": setter("config.n_a_bits", -3),
    "n_a_bits beyond int64 sums": setter("config.n_a_bits", 62),
    "config without n_input_bits": lambda arrays, metadata: metadata["config"].pop("n_input_bits"),
    "n_input_bits as a float": setter("config.n_input_bits", 5.0),
    "n_input_bits beyond int64 sums": setter("config.n_input_bits", 62),
    "n_input_bits too fine for the weights": setter("config.n_input_bits", 12),
    "n_accum_bits as a bool": setter("config.n_accum_bits", True),
    "quant_signed as a string": setter("config.quant_signed", "yes"),
    "quant_narrow as a number": setter("config.quant_narrow", 0),
    "feature_names as a string": setter("feature_names", "abcd"),
    "feature_names as numbers": setter("feature_names", [0, 1, 2, 3]),
    "feature_names too short": setter("feature_names", ["a", "b"]),
    "feature_names repeated": setter("feature_names", ["a", "b", "a", "c"]),
    "format_version as a string": setter("format_version", "1"),
    "format_version as a bool": setter("format_version", True),
    "format of another tool": setter("format", "another tool"),
    "no certificate": deleter("certificate"),
    "no format": deleter("format"),
    "certificate as a string": setter("certificate", "holds"),
    "negative scales": array_setter("scale_0", lambda scale: -scale),
    "an extra layer's array": array_setter("weight_3", lambda _: np.zeros((3, 3), np.int64)),
    "an unknown array": array_setter("payload", lambda _: np.arange(3)),
    "metadata as int64": array_setter("metadata", lambda meta: meta.astype(np.int64)),
    "metadata 2-D": array_setter("metadata", lambda meta: meta.reshape(1, -1)),
    "feature_mean alone": array_setter("feature_mean", lambda _: np.zeros(4)),
}


@pytest.mark.parametrize("edit", list(METADATA_EDITS.values()), ids=list(METADATA_EDITS))
def test_edited_metadata_is_a_model_file_error(saved, tmp_path, edit):
    contents, _, _ = saved
    path = tmp_path / "edited.npz"
    path.write_bytes(edit_metadata(contents, edit))
    with pytest.raises(ModelFileError, match=INVALID):
        load(path)


# Edits a helper found loading silently and predicting otherwise (format version 4).
VALID_EDITS = {
    "classes reversed": lambda arrays, metadata: metadata["classes"].reverse(),
    "input_scale doubled": lambda arrays, metadata: metadata.update(
        input_scale=2 * metadata["input_scale"]
    ),
    "output scales reversed": array_setter("scale_2", lambda scale: scale[::-1].copy()),
    "output scales doubled": array_setter("scale_2", lambda scale: 2 * scale),
    "a classifier relabelled regression": setter("task", "regression"),
}


@pytest.mark.parametrize("edit", list(VALID_EDITS.values()), ids=list(VALID_EDITS))
def test_an_edit_that_leaves_the_file_valid_is_refused_by_its_sha256(saved, tmp_path, edit):
    contents, _, _ = saved
    path = tmp_path / "edited.npz"
    path.write_bytes(edit_metadata(contents, edit))
    with pytest.raises(ModelFileError, match=INVALID + ".*(SHA-256|regression model has no class)"):
        load(path)


def test_a_regression_head_with_class_labels_is_refused():
    with pytest.raises(ValueError, match="a regression model has no class labels"):
        ModelIO(
            0.1, (-4, 3), 2, np.ones(1), OutputHead("regression", np.array([0, 1]), 1, 0.0, 1.0)
        )


def test_an_unedited_rewrite_still_loads(saved, tmp_path):
    contents, original, X = saved
    path = tmp_path / "rewritten.npz"
    path.write_bytes(edit_metadata(contents, lambda arrays, metadata: None))
    np.testing.assert_array_equal(load(path).predict(X), original.predict(X))


def test_report_on_a_damaged_file_is_one_line_and_status_2(saved, tmp_path, capsys):
    contents, _, _ = saved
    path = tmp_path / "damaged.npz"
    flipped = contents[:28] + bytes([contents[28] ^ 0xFF]) + contents[29:]  # zlib.error on main
    for damaged in (contents[:100], flipped):
        path.write_bytes(damaged)
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and INVALID in err, err
