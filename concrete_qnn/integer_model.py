"""The integer-only model: exact inference on integer codes, numpy only (DESIGN.md section 4).

``quantize_input`` -> per layer ``A = codes @ W.T + B`` (exact) -> between layers a table
lookup ``T_l(A)`` that gives the next layer's input code -> ``dequantize_output``. Every
array is validated on construction and the accumulator certificate is recomputed from the
integer weights, so a model that breaks its bound cannot be built or loaded. This module
imports neither torch nor pickle.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from concrete_qnn.accumulator import code_range
from concrete_qnn.certificate import AccumulatorCertificate, LayerCertificate

FORMAT_VERSION = 1
# Rows per batch in predict: bounds peak memory (a 256-wide layer costs ~50 MB per batch).
BATCH_ROWS = 16384
# float64 represents every integer below 2^53 exactly: BLAS products are exact below it.
_FLOAT64_EXACT = 2**53
_CONFIG_KEYS = ("n_w_bits", "n_a_bits", "n_accum_bits", "quant_signed", "quant_narrow")


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
        ``n_w_bits``, ``n_a_bits``, ``n_accum_bits``, ``quant_signed``, ``quant_narrow``.
    input_scale : float
        Real value of one input code (the first quantizer's scale).
    weights : list of int64 arrays (n_out_l, n_in_l)
        Weight codes.
    biases : list of int64 arrays (n_out_l,)
        Bias codes in accumulator units.
    scales : list of float64 arrays (n_out_l,)
        Real value of one accumulator unit per neuron (``s_w * s_x``).
    tables : list of int64 arrays (n_out_l, width_l), one per hidden layer
        ``tables[l][j, A - table_offsets[l][j]]`` is the next layer's input code.
    table_offsets : list of int64 arrays (n_out_l,)
        The accumulator value of each table row's first entry.
    head : OutputHead
    feature_names : array of str or None
    feature_mean, feature_std : float64 arrays (n_features,) or None
        Standardization applied before quantization, ``(X - mean) / std``, for a model
        trained on standardized features (as a ``StandardScaler`` computes it).

    Raises
    ------
    ValueError
        If a shape, dtype or code range is wrong, or the certificate recomputed from the
        weights exceeds ``n_accum_bits``.
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
    ):
        self.config = {key: config[key] for key in _CONFIG_KEYS}
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
        self._validate_arrays()
        self.certificate = self._certify()
        self._validate_tables()
        # Exact arithmetic: float64 BLAS where every partial sum stays below 2^53, else int64.
        self._exact_in_float64 = [
            self._partial_sum_bound(layer) < _FLOAT64_EXACT for layer in range(self.n_layers)
        ]

    # ------------------------------------------------------------------ properties
    @property
    def input_range(self) -> tuple[int, int]:
        """Codes every layer's input quantizer produces."""
        return code_range(
            self.config["n_a_bits"], self.config["quant_signed"], self.config["quant_narrow"]
        )

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
        if not np.isfinite(self.input_scale) or self.input_scale <= 0:
            raise ValueError(f"input_scale must be positive and finite, got {self.input_scale}")
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
        if self.feature_names is not None and self.feature_names.shape != (self.n_features_in,):
            raise ValueError(
                f"feature_names has shape {self.feature_names.shape}, expected "
                f"({self.n_features_in},)"
            )
        if (self.feature_mean is None) != (self.feature_std is None):
            raise ValueError("feature_mean and feature_std go together")
        if self.feature_mean is not None:
            for name in ("feature_mean", "feature_std"):
                array = getattr(self, name)
                _check_array(name, array, np.float64, shape=(self.n_features_in,))
                if not np.all(np.isfinite(array)):
                    raise ValueError(f"{name} must be finite")
            if np.any(self.feature_std <= 0):
                raise ValueError("feature_std must be positive")
        n_outputs = self.weights[-1].shape[0]
        for name in ("target_mean", "target_std"):
            value = np.asarray(getattr(self.head, name), dtype=np.float64)
            if value.shape not in ((), (n_outputs,)) or not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be finite, one number or one per output")
        if not np.all(np.asarray(self.head.target_std) > 0):
            raise ValueError("target_std must be positive")
        if self.head.task == "classification":
            if self.head.classes is None or len(self.head.classes) != self.weights[-1].shape[0]:
                raise ValueError("a classifier needs one class label per output")
        elif self.head.task != "regression" or self.head.target_ndim not in (1, 2):
            raise ValueError(f"unknown output head {self.head}")

    def _certify(self) -> AccumulatorCertificate:
        layers = tuple(
            LayerCertificate.from_codes(f"fc{i}", weight, bias, self.input_range)
            for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True))
        )
        certificate = AccumulatorCertificate(layers, int(self.config["n_accum_bits"]))
        if not certificate.holds:
            raise ValueError(
                f"the weights break the accumulator bound: a neuron needs "
                f"{certificate.max_bits} bits, n_accum_bits is {certificate.n_accum_bits}\n"
                f"{certificate}"
            )
        return certificate

    def _partial_sum_bound(self, layer: int) -> int:
        """Bound on |any partial sum| of layer ``layer``'s accumulators."""
        weight, bias = self.weights[layer], self.biases[layer]
        largest_input = max(abs(code) for code in self.input_range)
        return int((np.abs(weight).sum(axis=1) * largest_input + np.abs(bias)).max())

    def _validate_tables(self) -> None:
        low, high = self.input_range
        for layer, (table, offsets) in enumerate(zip(self.tables, self.table_offsets, strict=True)):
            layer_certificate = self.certificate.layers[layer]
            n_out = self.weights[layer].shape[0]
            _check_array(f"tables[{layer}]", table, np.int64, ndim=2)
            _check_array(f"table_offsets[{layer}]", offsets, np.int64, shape=(n_out,))
            if table.shape[0] != n_out:
                raise ValueError(f"tables[{layer}] has {table.shape[0]} rows, expected {n_out}")
            if np.any(offsets > layer_certificate.lo) or np.any(
                offsets + table.shape[1] - 1 < layer_certificate.hi
            ):
                raise ValueError(
                    f"tables[{layer}] does not cover every certified accumulator value "
                    f"[{layer_certificate.lo.min()}, {layer_certificate.hi.max()}]"
                )
            if table.size and (table.min() < low or table.max() > high):
                raise ValueError(
                    f"tables[{layer}] holds codes outside the input codes [{low}, {high}]"
                )

    # ------------------------------------------------------------------ inference
    def quantize_input(self, X) -> np.ndarray:
        """Input codes, int64 (n_samples, n_features): ``clip(round(X / s), min, max)``.

        Computed in float32, as the Brevitas quantizer of the torch module computes it,
        after the standardization ``(X - feature_mean) / feature_std`` when the model has one.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in:
            raise ValueError(
                f"X has {X.shape[-1] if X.ndim else 0} features, but the model is expecting "
                f"{self.n_features_in} features as input"
            )
        if self.feature_mean is not None:
            X = (X.astype(np.float64) - self.feature_mean) / self.feature_std
        X = X.astype(np.float32)
        codes = np.round(X / np.float32(self.input_scale))
        return np.clip(codes, *self.input_range).astype(np.int64)

    def accumulate(self, layer: int, codes: np.ndarray) -> np.ndarray:
        """Exact accumulators of layer ``layer``, int64 (n_samples, n_out)."""
        weight, bias = self.weights[layer], self.biases[layer]
        if self._exact_in_float64[layer]:
            products = codes.astype(np.float64) @ weight.T.astype(np.float64)
            return products.astype(np.int64) + bias
        return codes @ weight.T + bias

    def lookup(self, layer: int, accumulators: np.ndarray) -> np.ndarray:
        """Next layer's input codes, int64 (n_samples, n_out): the table of ``layer``."""
        index = accumulators - self.table_offsets[layer]
        return np.take_along_axis(self.tables[layer], index.T, axis=1).T

    def dequantize_output(self, accumulators: np.ndarray) -> np.ndarray:
        """Real outputs, float64 (n_samples, n_outputs): ``s_w * s_x * A``."""
        return accumulators * self.scales[-1]

    def run(self, X, observe: list | None = None) -> np.ndarray:
        """Last-layer accumulators, int64 (n_samples, n_outputs), computed in batches.

        ``observe``, if given, receives per layer the (min, max) accumulator seen.
        """
        X = np.asarray(X)
        outputs = []
        for start in range(0, max(len(X), 1), BATCH_ROWS):
            codes = self.quantize_input(X[start : start + BATCH_ROWS])
            for layer in range(self.n_layers):
                accumulators = self.accumulate(layer, codes)
                if observe is not None and accumulators.size:
                    observe[layer].append((accumulators.min(), accumulators.max()))
                if layer < self.n_layers - 1:
                    codes = self.lookup(layer, accumulators)
            outputs.append(accumulators)
        return np.concatenate(outputs)

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
        if self.head.task != "classification":
            raise AttributeError("a regression model has no predict_proba")
        outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return outputs / outputs.sum(axis=1, keepdims=True)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Labels or targets from real outputs (n_samples, n_outputs)."""
        if self.head.task == "classification":
            return self.head.classes[outputs.argmax(axis=1)]
        outputs = outputs * self.head.target_std + self.head.target_mean
        return outputs.ravel() if self.head.target_ndim == 1 else outputs

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
            target_mean=_target_statistic(self.head.target_mean * target_std + target_mean),
            target_std=_target_statistic(self.head.target_std * target_std),
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
        arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
        with open(path, "wb") as file:
            np.savez_compressed(file, **arrays)

    @classmethod
    def load(cls, path) -> IntegerModel:
        """Read a file written by ``save``; validates it and recomputes the certificate.

        Raises
        ------
        ValueError
            If the file is not a readable model file, has an unknown format version, or
            its arrays are inconsistent or break the accumulator bound.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} is not a readable concrete-qnn model file: {error}") from None
        try:
            metadata = json.loads(arrays.pop("metadata").tobytes().decode())
        except (KeyError, ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} has no valid metadata: {error}") from None
        if metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format version {metadata.get('format_version')!r}; this "
                f"concrete-qnn reads version {FORMAT_VERSION}"
            )
        try:
            n_layers = int(metadata["n_layers"])
            weights = [arrays[f"weight_{i}"] for i in range(n_layers)]
            biases = [arrays[f"bias_{i}"] for i in range(n_layers)]
            scales = [arrays[f"scale_{i}"] for i in range(n_layers)]
            tables = [arrays[f"table_{i}"] for i in range(n_layers - 1)]
            offsets = [arrays[f"table_offset_{i}"] for i in range(n_layers - 1)]
            classes = metadata["classes"]
            head = OutputHead(
                metadata["task"],
                None if classes is None else np.asarray(classes),
                int(metadata["target_ndim"]),
                _target_statistic(metadata["target_mean"]),
                _target_statistic(metadata["target_std"]),
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
                arrays.get("feature_mean"),
                arrays.get("feature_std"),
            )
        except KeyError as error:
            raise ValueError(f"{path} lacks the entry {error}") from None
        if model.certificate.rows() != metadata["certificate"]:
            raise ValueError(f"{path}: the stored certificate does not match its weights")
        return model


def load(path) -> IntegerModel:
    """Load an integer model saved by ``IntegerModel.save`` (or an estimator's ``save``)."""
    return IntegerModel.load(path)


def _target_statistic(value) -> float | np.ndarray:
    """A target mean or standard deviation: a float, or a float64 array (n_outputs,)."""
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


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
