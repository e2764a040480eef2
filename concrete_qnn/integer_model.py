"""The integer-only model: exact inference on integer codes, numpy only (DESIGN.md section 4).

``quantize_input`` -> per layer ``A = codes @ W.T + B`` (exact) -> between layers a table
lookup ``T_l(floor(A / 2^k_l))`` that gives the next layer's input code (``k_l`` low bits
dropped, as concrete-python's ``truncate_bit_pattern`` drops them) -> ``dequantize_output``. Every
array is validated on construction and the accumulator certificate is recomputed from the
integer weights, so a model that breaks its bound cannot be built or loaded. This module
imports neither torch nor pickle.
"""

from __future__ import annotations

import hashlib
import io
import json
import reprlib
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from concrete_qnn.accumulator import code_range
from concrete_qnn.certificate import AccumulatorCertificate, LayerCertificate, certify_network
from concrete_qnn.model_io import ModelIO, target_statistic

# 5: the metadata carries the SHA-256 of the file's content (an edit that stays valid is refused).
FORMAT_VERSION = 5
# Rows per batch in predict: bounds peak memory (a 256-wide layer costs ~50 MB per batch).
BATCH_ROWS = 16384
# Bits a table lookup reads at most: a table has at most 2^16 entries per neuron (512 KiB of
# int64), concrete-python's largest table lookup. A wider accumulator must be read rounded.
MAX_LOOKUP_BITS = 16
# float64 represents every integer below 2^53 exactly: BLAS products are exact below it.
_FLOAT64_EXACT = 2**53
# Accumulators (and the certificate's worst cases) are computed in int64: refuse weights whose
# sums could leave [-2^62, 2^62], far from int64's limits.
_INT64_SAFE = 2**62
_FORMAT = "concrete-qnn integer model"
# The configuration an integer model keeps (the module's names; n_input_bits an integer).
CONFIG_KEYS = (
    "n_w_bits",
    "n_a_bits",
    "n_input_bits",
    "n_accum_bits",
    "quant_signed",
    "quant_narrow",
)


@dataclass(frozen=True)
class OutputHead:
    """How outputs become predictions.

    ``task`` is ``"classification"`` (``classes`` holds the labels, in output order) or
    ``"regression"`` (``target_ndim`` is 1 or 2, the dimensionality of the fitted ``y``;
    predictions are ``outputs * target_std + target_mean``, for a model trained on a
    standardized target). ``target_mean`` and ``target_std`` are floats (one for every
    target) or float64 arrays (n_outputs,) in the target's units, one per target column.
    """

    task: str
    classes: np.ndarray | None = None
    target_ndim: int = 2
    target_mean: float | np.ndarray = 0.0
    target_std: float | np.ndarray = 1.0


class IntegerModel:
    """A trained network as integer arrays, evaluated exactly with numpy.

    Parameters
    ----------
    config : dict
        ``n_w_bits``, ``n_a_bits`` (hidden layers' input codes), ``n_input_bits`` (the first
        layer's input codes, an integer), ``n_accum_bits``, ``quant_signed``, ``quant_narrow``.
    input_scale : float
        Real value of one input code (the first quantizer's scale).
    weights : list of int64 arrays (n_out_l, n_in_l)
        Weight codes.
    biases : list of int64 arrays (n_out_l,)
        Bias codes in accumulator units.
    scales : list of float64 arrays (n_out_l,)
        Real value of one accumulator unit per neuron (``s_w * s_x``).
    tables : list of int64 arrays (n_out_l, width_l), one per hidden layer
        ``tables[l][j, (A >> lsbs_to_remove[l]) - table_offsets[l][j]]`` is the next layer's
        input code; ``width_l <= 2^MAX_LOOKUP_BITS`` (65,536).
    table_offsets : list of int64 arrays (n_out_l,)
        ``A >> lsbs_to_remove[l]`` of each table row's first entry.
    head : OutputHead
    feature_names : array of str or None
    feature_mean, feature_std : float64 arrays (n_features,) or None
        Standardization applied before quantization, ``(X - mean) / std``, for a model
        trained on standardized features (as a ``StandardScaler`` computes it).
    lsbs_to_remove : list of int, one per hidden layer, or None (all 0)
        Low accumulator bits each table lookup drops: the table reads ``floor(A / 2^k)``,
        bit for bit what ``fhe.truncate_bit_pattern(A, k)`` gives under FHE, so it reads
        ``bits - k`` bits of a ``bits``-bit certified accumulator (``lookup_bits`` in the
        certificate). ``0 <= k < bits``.

    Raises
    ------
    ValueError
        If a shape, dtype or code range is wrong, a table is wider than
        ``2^MAX_LOOKUP_BITS``, a ``lsbs_to_remove`` entry is outside
        ``[0, bits)``, or the certificate recomputed from the weights exceeds
        ``n_accum_bits``.
    """

    def __init__(
        self,
        config,
        input_scale,
        weights,
        biases,
        scales,
        tables,
        table_offsets,
        head,
        feature_names=None,
        feature_mean=None,
        feature_std=None,
        lsbs_to_remove=None,
    ):
        self.config = {key: config[key] for key in CONFIG_KEYS}
        self.input_scale = float(input_scale)
        self.weights = list(weights)
        self.biases = list(biases)
        self.scales = list(scales)
        self.tables = list(tables)
        self.table_offsets = list(table_offsets)
        self.head = head
        self.feature_names = None if feature_names is None else np.asarray(feature_names)
        self.feature_mean = feature_mean
        self.feature_std = feature_std
        self.lsbs_to_remove = (
            [0] * len(self.tables) if lsbs_to_remove is None else list(lsbs_to_remove)
        )
        self._validate_arrays()
        self.certificate = self._certify()
        self.certificate = AccumulatorCertificate(
            tuple(
                layer.with_lookup_bits(layer.bits.max() - shift)
                for layer, shift in zip(self.certificate.layers, self.lsbs_to_remove, strict=False)
            )
            + self.certificate.layers[len(self.tables) :],
            self.certificate.n_accum_bits,
        )
        # Exact arithmetic: float64 BLAS where every partial sum stays below 2^53, else int64.
        self._exact_in_float64 = [
            self._partial_sum_bound(layer) < _FLOAT64_EXACT for layer in range(self.n_layers)
        ]

    # ------------------------------------------------------------------ properties
    @property
    def input_range(self) -> tuple[int, int]:
        """Codes the input quantizer produces (the first layer's inputs)."""
        return code_range(
            self.config["n_input_bits"], self.config["quant_signed"], self.config["quant_narrow"]
        )

    @property
    def activation_range(self) -> tuple[int, int]:
        """Codes the later layers' inputs (the tables' entries) may take."""
        return code_range(
            self.config["n_a_bits"], self.config["quant_signed"], self.config["quant_narrow"]
        )

    def _layer_input_range(self, layer: int) -> tuple[int, int]:
        return self.input_range if layer == 0 else self.activation_range

    @property
    def weight_range(self) -> tuple[int, int]:
        return code_range(self.config["n_w_bits"], True, self.config["quant_narrow"])

    @property
    def n_features_in(self) -> int:
        return self.weights[0].shape[1]

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    # ------------------------------------------------------------------ validation
    def _validate_arrays(self) -> None:
        n = len(self.weights)
        if n < 1 or not (len(self.biases) == len(self.scales) == n):
            raise ValueError(
                f"weights, biases and scales need one array per layer, got {len(self.weights)}, "
                f"{len(self.biases)} and {len(self.scales)}"
            )
        if not (len(self.tables) == len(self.table_offsets) == n - 1):
            raise ValueError(
                f"a {n}-layer model needs {n - 1} tables and table offsets, got "
                f"{len(self.tables)} and {len(self.table_offsets)}"
            )
        w_low, w_high = self.weight_range
        for layer, (weight, bias, scale) in enumerate(
            zip(self.weights, self.biases, self.scales, strict=True)
        ):
            _check_array(f"weights[{layer}]", weight, np.int64, ndim=2)
            n_out, n_in = weight.shape
            if layer > 0 and n_in != self.weights[layer - 1].shape[0]:
                raise ValueError(
                    f"weights[{layer}] has {n_in} inputs but layer {layer - 1} has "
                    f"{self.weights[layer - 1].shape[0]} outputs"
                )
            _check_array(f"biases[{layer}]", bias, np.int64, shape=(n_out,))
            _check_array(f"scales[{layer}]", scale, np.float64, shape=(n_out,))
            if weight.size and (weight.min() < w_low or weight.max() > w_high):
                raise ValueError(
                    f"weights[{layer}] has codes in [{weight.min()}, {weight.max()}], outside "
                    f"the {self.config['n_w_bits']}-bit weight codes [{w_low}, {w_high}]"
                )
            if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
                raise ValueError(f"scales[{layer}] must be positive and finite")
            # the same bound as _partial_sum_bound, in float64, which cannot overflow
            largest_input = float(max(abs(code) for code in self._layer_input_range(layer)))
            magnitude = np.abs(weight.astype(np.float64)).sum(axis=1) * largest_input
            magnitude += np.abs(bias.astype(np.float64))
            if magnitude.size and magnitude.max() >= _INT64_SAFE:
                raise ValueError(
                    f"weights[{layer}] and biases[{layer}] allow accumulators beyond 2^62, "
                    "outside exact int64 arithmetic"
                )
        # Input quantizer and output head: validated, and used by quantize_input and predictions.
        self.io = ModelIO(
            self.input_scale,
            self.input_range,
            self.n_features_in,
            self.scales[-1],
            self.head,
            self.feature_names,
            self.feature_mean,
            self.feature_std,
        )

    def _certify(self) -> AccumulatorCertificate:
        """The certificate over reachable input codes; validates each table on the way.

        Layer ``l + 1``'s inputs reach the entries of layer ``l``'s table over its certified
        interval (``certify_network``), so each table is validated before it is read.
        """
        if len(self.lsbs_to_remove) != len(self.tables):
            raise ValueError(
                f"lsbs_to_remove needs one entry per hidden layer ({len(self.tables)}), got "
                f"{len(self.lsbs_to_remove)}"
            )
        certificate = certify_network(
            self.n_layers,
            lambda layer, _: (self.weights[layer], self.biases[layer]),
            self.input_range,
            int(self.config["n_accum_bits"]),
            self._validated_table,
            self.activation_range,
        )
        certificate.require("the weights break the accumulator bound")
        return certificate

    def _partial_sum_bound(self, layer: int) -> int:
        """Bound on |any partial sum| of layer ``layer``'s accumulators."""
        weight, bias = self.weights[layer], self.biases[layer]
        largest_input = max(abs(code) for code in self._layer_input_range(layer))
        return int((np.abs(weight).sum(axis=1) * largest_input + np.abs(bias)).max())

    def _validated_table(
        self, layer: int, layer_certificate: LayerCertificate
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Table, offsets and dropped bits of hidden layer ``layer``, checked against its
        certified interval (``certify_network`` asks only for layers within ``n_accum_bits``):
        the shift fits its width, every certified value is covered and every code is an input
        code."""
        low, high = self.activation_range
        table, offsets = self.tables[layer], self.table_offsets[layer]
        shift = self.lsbs_to_remove[layer]
        layer_bits = int(layer_certificate.bits.max())
        if (
            isinstance(shift, bool)
            or not isinstance(shift, (int, np.integer))
            or not 0 <= shift < layer_bits
        ):
            raise ValueError(
                f"lsbs_to_remove[{layer}] must be an integer in [0, {layer_bits}) for a "
                f"{layer_bits}-bit accumulator, got {shift!r}"
            )
        n_out = self.weights[layer].shape[0]
        _check_array(f"tables[{layer}]", table, np.int64, ndim=2)
        _check_array(f"table_offsets[{layer}]", offsets, np.int64, shape=(n_out,))
        if table.shape[0] != n_out:
            raise ValueError(f"tables[{layer}] has {table.shape[0]} rows, expected {n_out}")
        if table.shape[1] > 2**MAX_LOOKUP_BITS:
            raise ValueError(
                f"tables[{layer}] has {table.shape[1]} entries per neuron, more than the "
                f"2^{MAX_LOOKUP_BITS} of a {MAX_LOOKUP_BITS}-bit lookup"
            )
        if np.any(offsets > layer_certificate.lo >> shift) or np.any(
            offsets + table.shape[1] - 1 < layer_certificate.hi >> shift
        ):
            raise ValueError(
                f"tables[{layer}] does not cover every certified accumulator value "
                f"[{layer_certificate.lo.min()}, {layer_certificate.hi.max()}]"
            )
        if table.size and (table.min() < low or table.max() > high):
            raise ValueError(
                f"tables[{layer}] holds codes outside the activation codes [{low}, {high}]"
            )
        return table, offsets, int(shift)

    # ------------------------------------------------------------------ inference
    def _columns_by_name(self, X):
        """``X`` with a DataFrame's columns in the model's feature order; arrays unchanged.

        Every method that takes ``X`` calls this first. A DataFrame (anything with
        ``.columns``) whose column names are all strings is matched by name when the model
        stores ``feature_names``: its columns may come in any order, but each stored name must
        be present and no other. Arrays are read by position, without a warning (the
        estimators pass validated arrays). As in scikit-learn, a DataFrame without string
        column names given to a model with names, or a named DataFrame given to a model
        without names, is read by position with a ``UserWarning``.

        Raises
        ------
        ValueError
            If a stored name is missing, a column is unknown or repeated, or the column
            names mix strings and other types.
        """
        columns = getattr(X, "columns", None)
        if columns is None or len(columns) == 0:
            return X
        columns = list(columns)
        named = [isinstance(column, str) for column in columns]
        if any(named) and not all(named):
            raise ValueError(
                f"X has column names of mixed types {reprlib.repr(columns)}: feature names "
                "must all be strings"
            )
        if self.feature_names is None:
            if all(named):
                warnings.warn(
                    "X has feature names, but the model was fitted without feature names; "
                    "its columns are read by position",
                    UserWarning,
                    stacklevel=3,
                )
            return X
        if not all(named):
            warnings.warn(
                "X does not have valid feature names, but the model was fitted with feature "
                "names; its columns are read by position",
                UserWarning,
                stacklevel=3,
            )
            return X
        names = self.feature_names.tolist()
        known, given = set(names), set(columns)
        problems = {
            "unseen at fit time": [column for column in columns if column not in known],
            "seen at fit time, yet now missing": [name for name in names if name not in given],
            "repeated": sorted(column for column, count in Counter(columns).items() if count > 1),
        }
        if any(problems.values()):
            raise ValueError(
                "The feature names should match those that were passed during fit: "
                + "; ".join(
                    f"feature names {kind}: {reprlib.repr(found)}"
                    for kind, found in problems.items()
                    if found
                )
            )
        return X[names]

    def quantize_input(self, X) -> np.ndarray:
        """Input codes, int64 (n_samples, n_features): ``clip(round(X / s), min, max)``.

        Computed in float32, as the Brevitas quantizer of the torch module computes it,
        after the standardization ``(X - feature_mean) / feature_std`` when the model has one.
        ``X`` is an array or a DataFrame (see ``_columns_by_name``).

        Raises
        ------
        ValueError
            If ``X`` has another number of features or names, or contains NaN.
        """
        return self.io.quantize_input(self._columns_by_name(X))

    def accumulate(self, layer: int, codes: np.ndarray) -> np.ndarray:
        """Exact accumulators of layer ``layer``, int64 (n_samples, n_out)."""
        weight, bias = self.weights[layer], self.biases[layer]
        if self._exact_in_float64[layer]:
            products = codes.astype(np.float64) @ weight.T.astype(np.float64)
            return products.astype(np.int64) + bias
        return codes @ weight.T + bias

    def lookup(self, layer: int, accumulators: np.ndarray) -> np.ndarray:
        """Next layer's input codes, int64 (n_samples, n_out): the table of ``layer`` read
        at ``floor(A / 2^lsbs_to_remove[layer])``."""
        index = (accumulators >> self.lsbs_to_remove[layer]) - self.table_offsets[layer]
        return np.take_along_axis(self.tables[layer], index.T, axis=1).T

    def dequantize_output(self, accumulators: np.ndarray) -> np.ndarray:
        """Real outputs, float64 (n_samples, n_outputs): ``s_w * s_x * A``."""
        return self.io.dequantize_output(accumulators)

    def run(self, X, observe: list | None = None) -> np.ndarray:
        """Last-layer accumulators, int64 (n_samples, n_outputs), computed in batches.

        ``observe``, if given, receives per layer the (min, max) accumulator seen.
        ``X`` is an array or a DataFrame (see ``_columns_by_name``). Memory: the output
        plus one batch of ``BATCH_ROWS`` rows through the network, whatever ``n_samples``.
        """
        X = np.asarray(self._columns_by_name(X))
        outputs = np.empty((len(X), self.weights[-1].shape[0]), dtype=np.int64)
        for start in range(0, max(len(X), 1), BATCH_ROWS):
            codes = self.quantize_input(X[start : start + BATCH_ROWS])
            for layer in range(self.n_layers):
                accumulators = self.accumulate(layer, codes)
                if observe is not None and accumulators.size:
                    observe[layer].append((accumulators.min(), accumulators.max()))
                if layer < self.n_layers - 1:
                    codes = self.lookup(layer, accumulators)
            outputs[start : start + BATCH_ROWS] = accumulators
        return outputs

    def decision_outputs(self, X) -> np.ndarray:
        """Real network outputs, float64 (n_samples, n_outputs)."""
        return self.dequantize_output(self.run(X))

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the outputs, float64 (n_samples, n_classes); classifiers only."""
        return self.probabilities(self.decision_outputs(X))

    def predict(self, X) -> np.ndarray:
        """Class labels (n_samples,), or regression targets shaped like the fitted ``y``."""
        return self.predictions(self.decision_outputs(X))

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Softmax of real outputs (n_samples, n_classes); classifiers only."""
        return self.io.probabilities(outputs)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Labels or targets from real outputs (n_samples, n_outputs)."""
        return self.io.predictions(outputs)

    def with_standardization(
        self, feature_mean, feature_std, target_mean=0.0, target_std=1.0, feature_names=None
    ) -> IntegerModel:
        """A copy that standardizes raw features itself (and un-standardizes targets).

        ``target_mean``, ``target_std`` (floats or arrays (n_outputs,)) say that this model's
        predictions are standardized targets: the copy predicts
        ``predictions * target_std + target_mean`` (composed with the model's own target
        statistics, which the defaults keep). ``feature_names`` (n_features,) replaces the
        model's names when given.
        """
        head = replace(
            self.head,
            target_mean=target_statistic(self.head.target_mean * target_std + target_mean),
            target_std=target_statistic(self.head.target_std * target_std),
        )
        if feature_names is None:
            feature_names = self.feature_names
        return IntegerModel(
            self.config,
            self.input_scale,
            self.weights,
            self.biases,
            self.scales,
            self.tables,
            self.table_offsets,
            head,
            feature_names,
            np.asarray(feature_mean, dtype=np.float64),
            np.asarray(feature_std, dtype=np.float64),
            self.lsbs_to_remove,
        )

    def observed_certificate(self, X) -> AccumulatorCertificate:
        """The certificate with each layer's accumulator range observed on ``X``."""
        observed = [[] for _ in range(self.n_layers)]
        self.run(X, observe=observed)
        layers = tuple(
            layer.with_observed(min(lo for lo, _ in seen), max(hi for _, hi in seen))
            for layer, seen in zip(self.certificate.layers, observed, strict=True)
        )
        return AccumulatorCertificate(layers, self.certificate.n_accum_bits)

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write one ``.npz`` file: integer and float arrays plus JSON metadata."""
        arrays = {}
        for layer in range(self.n_layers):
            arrays[f"weight_{layer}"] = self.weights[layer]
            arrays[f"bias_{layer}"] = self.biases[layer]
            arrays[f"scale_{layer}"] = self.scales[layer]
        for layer in range(self.n_layers - 1):
            arrays[f"table_{layer}"] = self.tables[layer]
            arrays[f"table_offset_{layer}"] = self.table_offsets[layer]
        if self.feature_mean is not None:
            arrays["feature_mean"] = self.feature_mean
            arrays["feature_std"] = self.feature_std
        metadata = {
            "format": "concrete-qnn integer model",
            "format_version": FORMAT_VERSION,
            "config": self.config,
            "input_scale": self.input_scale,
            "n_layers": self.n_layers,
            "lsbs_to_remove": [int(shift) for shift in self.lsbs_to_remove],
            "task": self.head.task,
            "classes": None if self.head.classes is None else self.head.classes.tolist(),
            "target_ndim": self.head.target_ndim,
            "target_mean": np.asarray(self.head.target_mean).tolist(),
            "target_std": np.asarray(self.head.target_std).tolist(),
            "feature_names": None
            if self.feature_names is None
            else self.feature_names.astype(str).tolist(),
            "certificate": self.certificate.rows(),
        }
        metadata["sha256"] = _content_sha256(arrays, metadata)
        arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
        with open(path, "wb") as file:
            np.savez_compressed(file, **arrays)

    @classmethod
    def load(cls, path) -> IntegerModel:
        """Read a file written by ``save``; validates it and recomputes the certificate.

        Raises
        ------
        ValueError
            ``"<path> is not a valid concrete-qnn model file: <reason>"`` for any file that is
            not one written by ``save``: missing, not a zip archive, damaged or truncated
            bytes, a member that is not a plain numpy array, metadata of the wrong type or
            range, a missing or unexpected entry, another format version, inconsistent
            arrays, weights that break the accumulator bound or the stored certificate, or
            content that does not match its SHA-256 (an edit that left the file valid).
        """
        path = Path(path)
        try:
            arrays, metadata = _read_model_file(path)
            return cls._from_file_entries(arrays, metadata)
        except ValueError as error:
            raise ValueError(f"{path} is not a valid concrete-qnn model file: {error}") from None

    @classmethod
    def _from_file_entries(cls, arrays: dict, metadata) -> IntegerModel:
        """The model from a file's arrays (consumed) and its decoded JSON metadata.

        Structure, ranges and the certificate are checked first, each with its own message;
        the content's SHA-256 last, which refuses an edit that leaves the file valid."""
        _check_metadata(metadata)
        try:
            intact = metadata["sha256"] == _content_sha256(arrays, metadata)
        except ValueError:  # NaN or infinity in the metadata: never written by save
            intact = False

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
        classes = metadata["classes"]
        head = OutputHead(
            metadata["task"],
            None if classes is None else np.asarray(classes),
            metadata["target_ndim"],
            target_statistic(metadata["target_mean"]),
            target_statistic(metadata["target_std"]),
        )
        model = cls(
            metadata["config"],
            metadata["input_scale"],
            weights,
            biases,
            scales,
            tables,
            offsets,
            head,
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


def load(path) -> IntegerModel:
    """Load an integer model saved by ``IntegerModel.save`` (or an estimator's ``save``)."""
    return IntegerModel.load(path)


def _read_model_file(path: Path) -> tuple[dict, object]:
    """A model file's arrays by name and its decoded JSON metadata.

    Each zip member is read whole before numpy parses it, so zip's CRC-32 check sees every
    byte: a damaged member is refused rather than parsed. Arrays are read with
    ``allow_pickle=False``.

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


def _content_sha256(arrays: dict, metadata: dict) -> str:
    """SHA-256 (hex) of a model file's content: each array's name, dtype, shape and bytes,
    in name order, then the canonical JSON of the metadata less its ``"sha256"`` entry.

    Raises
    ------
    ValueError
        If the metadata holds NaN or infinity (JSON has no such numbers).
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    content = {key: value for key, value in metadata.items() if key != "sha256"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    digest.update(canonical.encode())
    return digest.hexdigest()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _distinct_list(values, kinds) -> bool:
    """A non-empty list of distinct values, all of one type among ``kinds``."""
    return (
        isinstance(values, list)
        and len({type(value) for value in values}) == 1
        and type(values[0]) in kinds
        and len(set(values)) == len(values)
    )


# Metadata entry -> (test, what it must be). The arrays' shapes, dtypes and ranges are
# checked by IntegerModel itself.
_BITS = (lambda value: _is_int(value) and 1 <= value <= 64, "an integer from 1 to 64")
_FLAG = (lambda value: isinstance(value, bool), "true or false")
_NUMBER = (_is_number, "a number")
_NUMBERS = (
    lambda value: (
        _is_number(value)
        or (isinstance(value, list) and len(value) > 0 and all(_is_number(v) for v in value))
    ),
    "a number or a list of numbers",
)
_CONFIG_ENTRIES = {
    "n_w_bits": _BITS,
    "n_a_bits": _BITS,
    "n_input_bits": _BITS,
    "n_accum_bits": _BITS,
    "quant_signed": _FLAG,
    "quant_narrow": _FLAG,
}
_METADATA_ENTRIES = {
    "config": (lambda value: isinstance(value, dict), "an object"),
    "input_scale": _NUMBER,
    "n_layers": (lambda value: _is_int(value) and value >= 1, "a positive integer"),
    "task": (
        lambda value: value in ("classification", "regression"),
        "classification or regression",
    ),
    "classes": (
        lambda value: value is None or _distinct_list(value, (str, int, float, bool)),
        "null or a list of distinct labels of one type",
    ),
    "target_ndim": (lambda value: _is_int(value) and value in (1, 2), "1 or 2"),
    "target_mean": _NUMBERS,
    "target_std": _NUMBERS,
    "feature_names": (
        lambda value: value is None or _distinct_list(value, (str,)),
        "null or a list of distinct strings",
    ),
    "certificate": (lambda value: isinstance(value, list), "a list of rows"),
    "lsbs_to_remove": (
        lambda value: isinstance(value, list) and all(_is_int(k) and k >= 0 for k in value),
        "a list of non-negative integers",
    ),
    "sha256": (
        lambda value: isinstance(value, str) and len(value) == 64,
        "the 64 hex digits of the content's SHA-256",
    ),
}


def _check_metadata(metadata) -> None:
    """Refuse metadata of another format or version, or with an entry of the wrong type."""
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise ValueError(f"its metadata does not name the format {_FORMAT!r}")
    version = metadata.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise ValueError(
            f"it has format version {reprlib.repr(version)}; this concrete-qnn reads version "
            f"{FORMAT_VERSION}"
        )
    _check_entries(metadata, _METADATA_ENTRIES)
    _check_entries(metadata["config"], _CONFIG_ENTRIES)


def _check_entries(section: dict, entries: dict) -> None:
    for key, (valid, description) in entries.items():
        if key not in section:
            raise ValueError(f"it lacks the entry {key!r}")
        if not valid(section[key]):
            raise ValueError(
                f"its entry {key!r} must be {description}, got {reprlib.repr(section[key])}"
            )


def _check_array(name, array, dtype, ndim=None, shape=None) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != dtype:
        raise ValueError(
            f"{name} must be a numpy array of {np.dtype(dtype).name}, got "
            f"{getattr(array, 'dtype', type(array).__name__)}"
        )
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
