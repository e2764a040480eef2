"""The file formats: their names and versions, the content digest, the JSON layout of the
model's clear ends, and the metadata checks, declared as data (tables of
``constraints.Constraint``).

Shared by the ``.npz`` model files (``integer.model_file``), the deployment artifacts' JSON
(``deploy.artifacts``) and the keys file (``deploy.client``). Every file's JSON metadata names
its format and version (``FileFormat``); the model files and the artifacts' JSON also carry
``"sha256"``, the SHA-256 of their content (``content_sha256``), so a file that was damaged
or edited is refused even when it is still valid JSON. Nothing here imports torch, concrete
or pickle.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from dataclasses import dataclass, replace

import numpy as np

from concrete_qnn.constraints import Constraint, is_integer, is_number
from concrete_qnn.integer.io import ModelIO, OutputHead, target_statistic


# ---------------------------------------------------------------------- formats
@dataclass(frozen=True)
class FileFormat:
    """A file format: the ``"format"`` and ``"format_version"`` entries of its metadata.

    ``entries`` (or None): the other entries its metadata must hold, checked by ``check``
    (see ``check_entries``). ``older``: earlier versions this package still reads.
    """

    name: str
    version: int
    entries: dict | None = None
    older: tuple[int, ...] = ()

    def header(self) -> dict:
        """The first two entries of a file's metadata: ``format`` and ``format_version``."""
        return {"format": self.name, "format_version": self.version}

    def check(self, metadata) -> None:
        """Refuse metadata of another format or version, or with an entry of the wrong type.

        Raises
        ------
        ValueError
            Saying what is wrong (``"it has format version 4; this concrete-qnn reads
            version 5"``, ``"it lacks the entry 'task'"``, ...), for the caller to prefix
            with the file's path.
        """
        if not isinstance(metadata, dict) or metadata.get("format") != self.name:
            raise ValueError(f"its metadata does not name the format {self.name!r}")
        version = metadata.get("format_version")
        if not is_integer(version) or version not in (self.version, *self.older):
            raise ValueError(
                f"it has format version {reprlib.repr(version)}; this concrete-qnn reads "
                f"version {self.version}"
                + (f" (and {', '.join(map(str, self.older))})" if self.older else "")
            )
        if self.entries is not None:
            check_entries(metadata, self.entries)


# ---------------------------------------------------------------------- digest
def content_sha256(metadata: dict, arrays: dict | None = None) -> str:
    """SHA-256 (hex) of a file's content: each array's name, dtype, shape and bytes, in name
    order, then the canonical JSON (sorted keys, no spaces) of ``metadata`` less its
    ``"sha256"`` entry.

    Parameters
    ----------
    metadata : dict
        JSON-serializable metadata.
    arrays : dict of str to numpy array, or None (no arrays)

    Raises
    ------
    ValueError
        If the metadata holds NaN or infinity (JSON has no such numbers).
    """
    digest = hashlib.sha256()
    for name in sorted(arrays or {}):
        array = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    content = {key: value for key, value in metadata.items() if key != "sha256"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    digest.update(canonical.encode())
    return digest.hexdigest()


def with_sha256(metadata: dict, arrays: dict | None = None) -> dict:
    """``metadata`` followed by its ``"sha256"`` entry (``content_sha256``)."""
    return {**metadata, "sha256": content_sha256(metadata, arrays)}


def sha256_matches(metadata: dict, arrays: dict | None = None) -> bool:
    """Whether ``metadata["sha256"]`` is the SHA-256 of the content (False for metadata
    with NaN or infinity, which no writer produces)."""
    try:
        return metadata.get("sha256") == content_sha256(metadata, arrays)
    except ValueError:
        return False


# ---------------------------------------------------------------------- entries
def check_entries(section: dict, entries: dict) -> None:
    """Check that ``section`` holds each of ``entries`` (name -> ``Constraint``, or a dict
    of entries for a nested JSON object), first at this level, then inside nested objects.

    Raises
    ------
    ValueError
        ``"it lacks the entry 'name'"`` or ``"its entry 'name' must be <description>, got
        <value>"``.
    """
    for key, entry in entries.items():
        if key not in section:
            raise ValueError(f"it lacks the entry {key!r}")
        if isinstance(entry, dict):
            entry = _OBJECT
        if not entry.accepts(section[key]):
            raise ValueError(
                f"its entry {key!r} must be {entry.allowed}, got {reprlib.repr(section[key])}"
            )
    for key, entry in entries.items():
        if isinstance(entry, dict):
            check_entries(section[key], entry)


def _distinct_list(values, kinds) -> bool:
    """A non-empty list of distinct values, all of one type among ``kinds``."""
    return (
        isinstance(values, list)
        and len({type(value) for value in values}) == 1
        and type(values[0]) in kinds
        and len(set(values)) == len(values)
    )


def _numbers(value) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(is_number(v) for v in value)


_OBJECT = Constraint(lambda value: isinstance(value, dict), "an object")
_BITS = Constraint(lambda value: is_integer(value) and 1 <= value <= 64, "an integer from 1 to 64")
_FLAG = Constraint(lambda value: isinstance(value, bool), "true or false")
_NUMBER = Constraint(is_number, "a number")
_POSITIVE_INTEGER = Constraint(lambda value: is_integer(value) and value >= 1, "a positive integer")
_SHA256 = Constraint(
    lambda value: isinstance(value, str) and len(value) == 64,
    "the 64 hex digits of the content's SHA-256",
)
_STATISTIC = Constraint(
    lambda value: is_number(value) or _numbers(value), "a number or a list of numbers"
)
# The output head (``head_to_json``).
HEAD_ENTRIES = {
    "task": Constraint(
        lambda value: value in ("classification", "regression"), "classification or regression"
    ),
    "classes": Constraint(
        lambda value: value is None or _distinct_list(value, (str, int, float, bool)),
        "null or a list of distinct labels of one type",
    ),
    "target_ndim": Constraint(lambda value: is_integer(value) and value in (1, 2), "1 or 2"),
    "target_mean": _STATISTIC,
    "target_std": _STATISTIC,
}
FEATURE_NAMES = Constraint(
    lambda value: value is None or _distinct_list(value, (str,)),
    "null or a list of distinct strings",
)
_STANDARDIZATION = Constraint(
    lambda value: value is None or _numbers(value), "null or a list of numbers"
)


def _label_dtype(value) -> bool:
    """The ``dtype.str`` of labels: object, str, bool, integer or float."""
    try:
        return isinstance(value, str) and np.dtype(value).kind in "OUbiuf"
    except TypeError:
        return False


# The input quantizer and output head of a version 3 deployment artifact.
IO_ENTRIES_3 = {
    "input": {
        "n_features": _POSITIVE_INTEGER,
        "scale": _NUMBER,
        "code_range": Constraint(
            lambda value: (
                isinstance(value, list) and len(value) == 2 and all(map(is_integer, value))
            ),
            "two integers",
        ),
        "feature_mean": _STANDARDIZATION,
        "feature_std": _STANDARDIZATION,
    },
    "output": {"scales": Constraint(_numbers, "a list of numbers"), **HEAD_ENTRIES},
    "feature_names": FEATURE_NAMES,
}
# Version 4's (``io_to_json``): version 3's, the column selection of a deployed pipeline
# (``ModelIO.columns``, ``n_columns``; ``feature_names`` then names X's columns) and the
# classes' dtype (``classes.dtype.str``: object-dtype labels stay object).
IO_ENTRIES = {
    "input": {
        **IO_ENTRIES_3["input"],
        "n_columns": _POSITIVE_INTEGER,
        "columns": Constraint(
            lambda value: (
                value is None
                or (isinstance(value, list) and all(is_integer(v) and v >= 0 for v in value))
            ),
            "null or a list of non-negative integers",
        ),
    },
    "output": {
        **IO_ENTRIES_3["output"],
        "classes_dtype": Constraint(
            lambda value: value is None or _label_dtype(value),
            "null or the dtype of object, str, bool, integer or float labels",
        ),
    },
    "feature_names": FEATURE_NAMES,
}


# ---------------------------------------------------------------------- layout
def head_to_json(head: OutputHead) -> dict:
    """The output head as JSON entries: ``task``, ``classes``, ``target_ndim``,
    ``target_mean``, ``target_std`` (``HEAD_ENTRIES``), in this order."""
    return {
        "task": head.task,
        "classes": None if head.classes is None else head.classes.tolist(),
        "target_ndim": head.target_ndim,
        "target_mean": np.asarray(head.target_mean).tolist(),
        "target_std": np.asarray(head.target_std).tolist(),
    }


def head_from_json(section: dict) -> OutputHead:
    """The output head from entries checked against ``HEAD_ENTRIES``."""
    classes = section["classes"]
    return OutputHead(
        section["task"],
        None if classes is None else np.asarray(classes),
        section["target_ndim"],
        target_statistic(section["target_mean"]),
        target_statistic(section["target_std"]),
    )


def names_to_json(feature_names: np.ndarray | None) -> list[str] | None:
    """Feature names (n_features,) as a JSON list of strings, or None."""
    return None if feature_names is None else feature_names.astype(str).tolist()


def io_to_json(io: ModelIO) -> dict:
    """A ``ModelIO`` as the entries ``input``, ``output`` and ``feature_names``
    (``IO_ENTRIES``)."""
    classes = io.head.classes
    return {
        "input": {
            "n_features": io.n_features,
            "scale": io.input_scale,
            "code_range": list(io.input_range),
            "feature_mean": _array_to_json(io.feature_mean),
            "feature_std": _array_to_json(io.feature_std),
            "n_columns": io.n_columns,
            "columns": _array_to_json(io.columns),
        },
        "output": {
            "scales": io.output_scales.tolist(),
            **head_to_json(io.head),
            "classes_dtype": None if classes is None else classes.dtype.str,
        },
        "feature_names": names_to_json(io.feature_names),
    }


def io_from_json(metadata: dict) -> ModelIO:
    """The ``ModelIO`` that ``io_to_json`` wrote into ``metadata``; the layout of a
    ``FHE_CLIENT`` file of version 3 (``"format_version": 3``) too.

    Raises
    ------
    ValueError
        If an entry is missing or of the wrong type (``check_entries``), or the values do
        not make a valid ``ModelIO``.
    """
    version_3 = metadata.get("format_version") == 3
    check_entries(metadata, IO_ENTRIES_3 if version_3 else IO_ENTRIES)
    quantizer, output = metadata["input"], metadata["output"]
    head = head_from_json(output)
    dtype = output.get("classes_dtype")
    if dtype is not None:
        head = replace(head, classes=np.asarray(output["classes"], dtype=np.dtype(dtype)))
        if head.classes.tolist() != output["classes"]:
            raise ValueError(f"the classes do not keep their values as {dtype}")
    columns = quantizer.get("columns")
    return ModelIO(
        quantizer["scale"],
        quantizer["code_range"],
        quantizer["n_features"],
        np.asarray(output["scales"], dtype=np.float64),
        head,
        metadata["feature_names"],
        _array_from_json(quantizer["feature_mean"]),
        _array_from_json(quantizer["feature_std"]),
        None if columns is None else np.asarray(columns, dtype=np.int64),
        quantizer.get("n_columns"),
    )


def _array_to_json(array: np.ndarray | None) -> list | None:
    return None if array is None else array.tolist()


def _array_from_json(values: list | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


# ---------------------------------------------------------------------- the formats
# The configuration an integer model keeps and its file stores (the module's names;
# n_input_bits an integer).
CONFIG_ENTRIES = {
    "n_w_bits": _BITS,
    "n_a_bits": _BITS,
    "n_input_bits": _BITS,
    "n_accum_bits": _BITS,
    "quant_signed": _FLAG,
    "quant_narrow": _FLAG,
}
CONFIG_KEYS = tuple(CONFIG_ENTRIES)
# The metadata of an ``.npz`` model file; the arrays' shapes, dtypes and ranges are checked by
# IntegerModel itself. 5: the metadata carries the SHA-256 of the file's content (an edit
# that stays valid is refused).
MODEL_FILE = FileFormat(
    "concrete-qnn integer model",
    5,
    {
        "config": CONFIG_ENTRIES,
        "input_scale": _NUMBER,
        "n_layers": _POSITIVE_INTEGER,
        **HEAD_ENTRIES,
        "feature_names": FEATURE_NAMES,
        "certificate": Constraint(lambda value: isinstance(value, list), "a list of rows"),
        "lsbs_to_remove": Constraint(
            lambda value: isinstance(value, list) and all(is_integer(k) and k >= 0 for k in value),
            "a list of non-negative integers",
        ),
        "sha256": _SHA256,
    },
)
# The deployment artifacts' JSON files (``deploy.artifacts``), checked there. Client 4: the
# column selection of a deployed pipeline and the classes' dtype (``IO_ENTRIES``); version 3
# files still load, without them.
FHE_CLIENT = FileFormat("concrete-qnn fhe client", 4, older=(3,))
FHE_SERVER = FileFormat("concrete-qnn fhe server", 3)
# The keys.json of a keys file (``FHEClient.save_keys``).
FHE_KEYS = FileFormat("concrete-qnn fhe keys", 3)
