"""The ``.npz`` model file of an integer model: written by ``IntegerModel.save``, read back
by ``IntegerModel.load`` and ``concrete_qnn.load``.

One zip of ``.npy`` members (numpy's ``savez_compressed``): per layer ``weight_<l>`` (int64
(n_out, n_in)), ``bias_<l>`` (int64 (n_out,)), ``scale_<l>`` (float64 (n_out,)); per hidden
layer ``table_<l>`` (int64 (n_out, width)) and ``table_offset_<l>`` (int64 (n_out,));
``feature_mean`` and ``feature_std`` (float64 (n_features,)) for a model that standardizes;
and ``metadata``, uint8 bytes of JSON: the format and its version, the configuration, the
input scale, the number of layers, the rounding shifts, the output head, the feature names,
the certificate's rows and the SHA-256 of all of it (``formats.MODEL_FILE``). Arrays are read
with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from concrete_qnn.exceptions import ModelFileError
from concrete_qnn.integer.formats import (
    MODEL_FILE,
    head_from_json,
    head_to_json,
    names_to_json,
    sha256_matches,
    with_sha256,
)


def write_model_file(model, path) -> None:
    """Write ``model`` (an ``IntegerModel``) to ``path`` as one ``.npz`` file."""
    arrays = {}
    for layer in range(model.n_layers):
        arrays[f"weight_{layer}"] = model.weights[layer]
        arrays[f"bias_{layer}"] = model.biases[layer]
        arrays[f"scale_{layer}"] = model.scales[layer]
    for layer in range(model.n_layers - 1):
        arrays[f"table_{layer}"] = model.tables[layer]
        arrays[f"table_offset_{layer}"] = model.table_offsets[layer]
    if model.feature_mean is not None:
        arrays["feature_mean"] = model.feature_mean
        arrays["feature_std"] = model.feature_std
    metadata = {
        **MODEL_FILE.header(),
        "config": model.config,
        "input_scale": model.input_scale,
        "n_layers": model.n_layers,
        "lsbs_to_remove": [int(shift) for shift in model.lsbs_to_remove],
        **head_to_json(model.head),
        "feature_names": names_to_json(model.feature_names),
        "certificate": model.certificate.rows(),
    }
    metadata = with_sha256(metadata, arrays)
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez_compressed(file, **arrays)


def read_model_file(cls, path):
    """The model of class ``cls`` (``IntegerModel``) that ``path`` holds, validated, its
    certificate recomputed.

    Raises
    ------
    ModelFileError
        ``"<path> is not a valid concrete-qnn model file: <reason>"`` for any file that is
        not one written by ``write_model_file``: missing, not a zip archive, damaged or
        truncated bytes, a member that is not a plain numpy array, metadata of the wrong
        type or range, a missing or unexpected entry, another format version, inconsistent
        arrays, weights that break the accumulator bound or the stored certificate, or
        content that does not match its SHA-256 (an edit that left the file valid).
    """
    path = Path(path)
    try:
        arrays, metadata = _read_entries(path)
        return _from_entries(cls, arrays, metadata)
    except ValueError as error:
        raise ModelFileError(f"{path} is not a valid concrete-qnn model file: {error}") from None


def _read_entries(path: Path) -> tuple[dict, object]:
    """A model file's arrays by name and its decoded JSON metadata.

    Each zip member is read whole before numpy parses it, so zip's CRC-32 check sees every
    byte: a damaged member is refused rather than parsed.

    Raises
    ------
    ValueError
        If the bytes do not decode: the zip, deflate, npy and JSON parsers raise a dozen
        exception types on damaged input (``zlib.error``, ``NotImplementedError``,
        ``tokenize.TokenError``, ``RecursionError``, ...); each becomes a ValueError here.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        arrays = {
            name.removesuffix(".npy"): np.lib.format.read_array(
                io.BytesIO(data), allow_pickle=False
            )
            for name, data in members.items()
        }
        text = arrays.pop("metadata", None)
        if text is None or text.dtype != np.uint8 or text.ndim != 1:
            raise ValueError("it has no metadata entry of JSON bytes")
        return arrays, json.loads(text.tobytes().decode())
    except ValueError:
        raise
    except Exception as error:  # any failure to decode means a damaged file
        raise ValueError(f"{type(error).__name__}: {error}") from None


def _from_entries(cls, arrays: dict, metadata):
    """The model from a file's arrays (consumed) and its decoded JSON metadata.

    Structure, ranges and the certificate are checked first, each with its own message;
    the content's SHA-256 last, which refuses an edit that leaves the file valid."""
    MODEL_FILE.check(metadata)
    intact = sha256_matches(metadata, arrays)

    def take(name):
        if name not in arrays:
            raise ValueError(f"it lacks the entry {name!r}")
        return arrays.pop(name)

    n_layers = metadata["n_layers"]
    weights = [take(f"weight_{i}") for i in range(n_layers)]
    biases = [take(f"bias_{i}") for i in range(n_layers)]
    scales = [take(f"scale_{i}") for i in range(n_layers)]
    tables = [take(f"table_{i}") for i in range(n_layers - 1)]
    offsets = [take(f"table_offset_{i}") for i in range(n_layers - 1)]
    feature_mean = arrays.pop("feature_mean", None)
    feature_std = arrays.pop("feature_std", None)
    if arrays:
        raise ValueError(f"it holds unexpected entries {sorted(arrays)}")
    model = cls(
        metadata["config"],
        metadata["input_scale"],
        weights,
        biases,
        scales,
        tables,
        offsets,
        head_from_json(metadata),
        metadata["feature_names"],
        feature_mean,
        feature_std,
        metadata["lsbs_to_remove"],
    )
    if model.certificate.rows() != metadata["certificate"]:
        raise ValueError("the stored certificate does not match its weights")
    if not intact:
        raise ValueError("its content does not match its SHA-256: it was damaged or edited")
    return model
