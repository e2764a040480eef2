"""The integer model's two clear ends: input quantization and the output head (numpy only).

They are the parts of inference that the data owner runs in the clear around an encrypted
computation: ``quantize_input`` before encryption, ``dequantize_output`` and the predictions
after decryption. ``IntegerModel`` delegates to a ``ModelIO`` and the FHE client rebuilds one
from its artifact, so the clear model and the client share one implementation.
"""

from __future__ import annotations

import reprlib
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np


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

    def columns_by_name(self, X):
        """``X`` with a DataFrame's columns in the model's feature order; arrays unchanged.

        ``IntegerModel`` calls this first in every method that takes ``X``. A DataFrame
        (anything with ``.columns``) whose column names are all strings is matched by name
        when the model stores ``feature_names``: its columns may come in any order, but each
        stored name must be present and no other. Arrays are read by position, without a
        warning (the estimators pass validated arrays). As in scikit-learn, a DataFrame
        without string column names given to a model with names, or a named DataFrame given
        to a model without names, is read by position with a ``UserWarning``.

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
