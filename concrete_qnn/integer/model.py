"""The integer-only model: exact inference on integer codes, numpy only.

``quantize_input`` -> per layer ``A = codes @ W.T + B`` (exact) -> between layers a table
lookup ``T_l(floor(A / 2^k_l))`` that gives the next layer's input code (``k_l`` low bits
dropped, as concrete-python's ``truncate_bit_pattern`` drops them) -> ``dequantize_output``. Every
array is validated on construction (``integer.validation``) and the accumulator certificate is
recomputed from the integer weights, so a model that breaks its bound cannot be built or
loaded. This module imports neither torch nor pickle.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from concrete_qnn.accumulator import code_range
from concrete_qnn.certificate import AccumulatorCertificate
from concrete_qnn.integer.formats import CONFIG_KEYS
from concrete_qnn.integer.io import ModelIO, as_array, target_statistic
from concrete_qnn.integer.model_file import read_model_file, write_model_file
from concrete_qnn.integer.validation import certify, check_layers, partial_sum_bound

# Rows per batch in predict: bounds peak memory (a 256-wide layer costs ~50 MB per batch).
BATCH_ROWS = 16384
# float64 represents every integer below 2^53 exactly: BLAS products are exact below it.
_FLOAT64_EXACT = 2**53


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
        input code; ``width_l <= 2^MAX_LOOKUP_BITS`` (65,536, ``integer.validation``).
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
        If a shape, dtype or code range is wrong (``integer.validation``), or a
        ``lsbs_to_remove`` entry is outside ``[0, bits)``.
    InvalidParameterError
        If a table is wider than ``2^MAX_LOOKUP_BITS`` (``require_lookup_bits``).
    AccumulatorBoundError
        If the certificate recomputed from the weights exceeds ``n_accum_bits``.
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
        check_layers(self)
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
        self.certificate = certify(self)
        # Exact arithmetic: float64 BLAS where every partial sum stays below 2^53, else int64.
        self._exact_in_float64 = [
            partial_sum_bound(self, layer) < _FLOAT64_EXACT for layer in range(self.n_layers)
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

    def layer_input_range(self, layer: int) -> tuple[int, int]:
        """Codes layer ``layer``'s inputs take."""
        return self.input_range if layer == 0 else self.activation_range

    @property
    def weight_range(self) -> tuple[int, int]:
        """Codes the weights may take (signed, ``n_w_bits`` bits)."""
        return code_range(self.config["n_w_bits"], True, self.config["quant_narrow"])

    @property
    def n_features_in(self) -> int:
        """Number of input features (columns of ``X``)."""
        return self.weights[0].shape[1]

    @property
    def n_layers(self) -> int:
        """Number of linear layers (one table lookup between two of them)."""
        return len(self.weights)

    # ------------------------------------------------------------------ inference
    def quantize_input(self, X) -> np.ndarray:
        """Input codes, int64 (n_samples, n_features): ``clip(round(X / s), min, max)``.

        Computed in float32, as the Brevitas quantizer of the torch module computes it,
        after the standardization ``(X - feature_mean) / feature_std`` when the model has one.
        ``X`` is an array or a DataFrame (see ``ModelIO.columns_by_name``).

        Raises
        ------
        ValueError
            If ``X`` has another number of features or names, or contains NaN.
        """
        return self.io.quantize_input(self.io.columns_by_name(X))

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
        ``X`` is an array or a DataFrame (see ``ModelIO.columns_by_name``). Memory: the output
        plus one batch of ``BATCH_ROWS`` rows through the network, whatever ``n_samples``.
        """
        X = as_array(self.io.columns_by_name(X))
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
        """Write one ``.npz`` file: integer and float arrays plus JSON metadata
        (``integer.model_file``)."""
        write_model_file(self, path)

    @classmethod
    def load(cls, path) -> IntegerModel:
        """Read a file written by ``save``; validates it and recomputes the certificate.

        Raises
        ------
        ModelFileError
            ``"<path> is not a valid concrete-qnn model file: <reason>"`` for any file that is
            not one written by ``save`` (see ``integer.model_file.read_model_file``).
        """
        return read_model_file(cls, path)


def load(path) -> IntegerModel:
    """Load an integer model saved by ``IntegerModel.save`` (or an estimator's ``save``).

    Raises
    ------
    ModelFileError
        For any file that is not one written by ``save``.
    """
    return IntegerModel.load(path)
