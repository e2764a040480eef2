"""The integer model's two clear ends: input quantization and the output head (numpy only).

They are the parts of inference that the data owner runs in the clear around an encrypted
computation: ``quantize_input`` before encryption, ``dequantize_output`` and the predictions
after decryption. ``IntegerModel`` delegates to a ``ModelIO`` and the FHE client rebuilds one
from its artifact, so the clear model and the client share one implementation.
"""

from __future__ import annotations

import numpy as np


class ModelIO:
    """Input quantizer and output head of an integer model.

    Parameters
    ----------
    input_scale : float
        Real value of one input code (the first quantizer's scale), > 0.
    input_range : (int, int)
        Smallest and largest input code.
    n_features : int
        Number of input features.
    output_scales : float64 array (n_outputs,)
        Real value of one last-layer accumulator unit per output, > 0.
    head : OutputHead
        How real outputs become labels or targets.
    feature_names : array of str (n_features,) or None
    feature_mean, feature_std : float64 arrays (n_features,) or None
        Standardization ``(X - mean) / std`` applied before quantization.

    Raises
    ------
    ValueError
        If a scale is not positive and finite, a shape is wrong, ``feature_mean`` and
        ``feature_std`` are not given together, or the head does not fit the outputs (a
        classifier without one label per output, a regression head with labels).
    """

    def __init__(
        self,
        input_scale,
        input_range,
        n_features,
        output_scales,
        head,
        feature_names=None,
        feature_mean=None,
        feature_std=None,
    ):
        self.input_scale = float(input_scale)
        self.input_range = (int(input_range[0]), int(input_range[1]))
        self.n_features = int(n_features)
        self.output_scales = output_scales
        self.head = head
        self.feature_names = None if feature_names is None else np.asarray(feature_names)
        self.feature_mean = feature_mean
        self.feature_std = feature_std
        self._validate()

    def _validate(self) -> None:
        if not np.isfinite(self.input_scale) or self.input_scale <= 0:
            raise ValueError(f"input_scale must be positive and finite, got {self.input_scale}")
        if self.input_range[0] > self.input_range[1]:
            raise ValueError(f"input_range {self.input_range} is empty")
        scales = self.output_scales
        if not (isinstance(scales, np.ndarray) and scales.dtype == np.float64 and scales.ndim == 1):
            raise ValueError("output_scales must be a 1-D numpy array of float64")
        if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
            raise ValueError("output scales must be positive and finite")
        if self.feature_names is not None and self.feature_names.shape != (self.n_features,):
            raise ValueError(
                f"feature_names has shape {self.feature_names.shape}, expected ({self.n_features},)"
            )
        if (self.feature_mean is None) != (self.feature_std is None):
            raise ValueError("feature_mean and feature_std go together")
        if self.feature_mean is not None:
            for name in ("feature_mean", "feature_std"):
                array = getattr(self, name)
                if not (
                    isinstance(array, np.ndarray)
                    and array.dtype == np.float64
                    and array.shape == (self.n_features,)
                ):
                    raise ValueError(
                        f"{name} must be a float64 numpy array of shape ({self.n_features},)"
                    )
                if not np.all(np.isfinite(array)):
                    raise ValueError(f"{name} must be finite")
            if np.any(self.feature_std <= 0):
                raise ValueError("feature_std must be positive")
        head = self.head
        for name in ("target_mean", "target_std"):
            value = np.asarray(getattr(head, name), dtype=np.float64)
            if value.shape not in ((), scales.shape) or not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be finite, one number or one per output")
        if not np.all(np.asarray(head.target_std) > 0):
            raise ValueError("target_std must be positive")
        if head.task == "classification":
            if head.classes is None or len(head.classes) != len(scales):
                raise ValueError("a classifier needs one class label per output")
        elif head.task != "regression" or head.target_ndim not in (1, 2):
            raise ValueError(f"unknown output head {head}")
        elif head.classes is not None:
            raise ValueError("a regression model has no class labels")

    def quantize_input(self, X) -> np.ndarray:
        """Input codes, int64 (n_samples, n_features): ``clip(round(X / s), min, max)``.

        Computed in float32, as the Brevitas quantizer of the torch module computes it,
        after the standardization ``(X - feature_mean) / feature_std`` when there is one.

        Raises
        ------
        ValueError
            If ``X`` is not 2-D with ``n_features`` columns, or contains NaN.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X has {X.shape[-1] if X.ndim else 0} features, but the model is expecting "
                f"{self.n_features} features as input"
            )
        if self.feature_mean is not None:
            X = (X.astype(np.float64) - self.feature_mean) / self.feature_std
        X = X.astype(np.float32)
        if np.isnan(X).any():
            raise ValueError("Input X contains NaN: every feature needs a value")
        codes = np.round(X / np.float32(self.input_scale))
        return np.clip(codes, *self.input_range).astype(np.int64)

    def dequantize_output(self, accumulators: np.ndarray) -> np.ndarray:
        """Real outputs, float64 (n_samples, n_outputs): ``s_w * s_x * A``."""
        return accumulators * self.output_scales

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Softmax of real outputs (n_samples, n_classes); classifiers only."""
        if self.head.task != "classification":
            raise AttributeError("a regression model has no predict_proba")
        outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return outputs / outputs.sum(axis=1, keepdims=True)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Labels (n_samples,) or targets shaped like the fitted ``y`` from real outputs."""
        if self.head.task == "classification":
            return self.head.classes[outputs.argmax(axis=1)]
        outputs = outputs * self.head.target_std + self.head.target_mean
        return outputs.ravel() if self.head.target_ndim == 1 else outputs


def target_statistic(value) -> float | np.ndarray:
    """A target mean or standard deviation read from JSON: a float, or a float64 array
    (n_outputs,) for one per output column."""
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value
