"""The integer model's two clear ends: input quantization and the output head (numpy only).

They are the parts of inference that the data owner runs in the clear around an encrypted
computation: ``quantize_input`` (the column selection and per-feature affine map of a
deployed pipeline's preprocessing, or a standardization, then the quantizer) before
encryption, ``dequantize_output`` and the predictions after decryption. ``IntegerModel``
delegates to a ``ModelIO`` and the FHE client rebuilds one from its artifact, so the clear
model and the client share one implementation.
"""

from __future__ import annotations

import reprlib
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from concrete_qnn.exceptions import InputRangeWarning

# When ``quantize_input`` warns that its rows are not on the training data's scale. The input
# quantizer's scale is learned from the training data's 99th percentile of |x|, so about 1%
# of training values clip (1.6% on breast_cancer at 2/2/6 bits, 4-bit input codes [-8, 7])
# and about 0.1% lie beyond twice the largest code's magnitude ("far out"). Raw rows given to
# that model trained on standardized ones: 31% clip, 30% far out (the other features are
# below 1 in raw units). A single standardized row clips up to 53% of its values (an
# outlier), but at most 13% far out. So: warn when more than FAR_OUT_FRACTION of the values
# quantized in one call lie beyond FAR_OUT_FACTOR times the largest code's magnitude.
FAR_OUT_FACTOR = 2
FAR_OUT_FRACTION = 0.2


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
    feature_names : array of str (n_columns,) or None
        Names of the columns of ``X``.
    feature_mean, feature_std : float64 arrays (n_features,) or None
        Standardization ``(X - mean) / std`` applied before quantization: any per-feature
        affine map, such as a deployed pipeline's scalers composed (``deploy.preprocessing``).
    columns : int64 array (n_features,) or None
        The column of ``X`` each feature reads (a pipeline's column selection); None: ``X``
        has ``n_features`` columns, feature ``j`` is column ``j``.
    n_columns : int or None
        Number of columns of ``X``; None: ``n_features``. Set with ``columns``.

    Raises
    ------
    ValueError
        If a scale is not positive and finite, a shape is wrong, ``feature_mean`` and
        ``feature_std`` are not given together, a column index is outside ``X``'s columns,
        or the head does not fit the outputs (a classifier without one label per output, a
        regression head with labels).
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
        columns=None,
        n_columns=None,
    ):
        self.input_scale = float(input_scale)
        self.input_range = (int(input_range[0]), int(input_range[1]))
        self.n_features = int(n_features)
        self.output_scales = output_scales
        self.head = head
        self.feature_names = None if feature_names is None else np.asarray(feature_names)
        self.feature_mean = feature_mean
        self.feature_std = feature_std
        self.columns = columns
        self.n_columns = self.n_features if n_columns is None else int(n_columns)
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
        if self.feature_names is not None and self.feature_names.shape != (self.n_columns,):
            raise ValueError(
                f"feature_names has shape {self.feature_names.shape}, expected ({self.n_columns},)"
            )
        if self.columns is None:
            if self.n_columns != self.n_features:
                raise ValueError("n_columns differs from n_features without columns to select")
        elif not (
            isinstance(self.columns, np.ndarray)
            and self.columns.dtype == np.int64
            and self.columns.shape == (self.n_features,)
            and np.all((self.columns >= 0) & (self.columns < self.n_columns))
        ):
            raise ValueError(
                f"columns must be an int64 numpy array of shape ({self.n_features},) of "
                f"indices below n_columns={self.n_columns}"
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
        after the column selection (``columns``) and the standardization
        ``(X - feature_mean) / feature_std`` (in float64) when there are ones. Warns
        (``InputRangeWarning``) when more than ``FAR_OUT_FRACTION`` of the values lie beyond
        ``FAR_OUT_FACTOR`` times the largest code's magnitude.

        Raises
        ------
        ValueError
            If ``X`` is not 2-D with ``n_columns`` columns, or contains NaN (``pd.NA``
            included) or a value that is not a number.
        """
        X = as_array(X)
        if X.ndim != 2 or X.shape[1] != self.n_columns:
            raise ValueError(
                f"X has {X.shape[-1] if X.ndim else 0} features, but the model is expecting "
                f"{self.n_columns} features as input"
            )
        if self.columns is not None:
            X = X[:, self.columns]
        try:
            if self.feature_mean is not None:
                X = (X.astype(np.float64) - self.feature_mean) / self.feature_std
            X = X.astype(np.float32)
        except TypeError as error:  # an object array holding pd.NA, None or another object
            raise ValueError(f"Input X holds a value that is not a number: {error}") from None
        if np.isnan(X).any():
            raise ValueError("Input X contains NaN: every feature needs a value")
        codes = np.round(X / np.float32(self.input_scale))
        self._warn_if_far_out(codes)
        return np.clip(codes, *self.input_range).astype(np.int64)

    def _warn_if_far_out(self, codes: np.ndarray) -> None:
        limit = FAR_OUT_FACTOR * max(-self.input_range[0], self.input_range[1])
        fraction = np.mean(np.abs(codes) > limit) if codes.size else 0.0
        if fraction > FAR_OUT_FRACTION:
            low, high = (code * self.input_scale for code in self.input_range)
            warnings.warn(
                f"{fraction:.0%} of the input values lie beyond {FAR_OUT_FACTOR} times the "
                f"range the input quantizer represents ([{low:.3g}, {high:.3g}]"
                + (" after the model's own preprocessing" if self.feature_mean is not None else "")
                + "), so they are clipped: are the rows preprocessed (scaled) as the training "
                "rows were? A fitted Pipeline deployed with concrete_qnn.deploy.save_fhe(pipeline,"
                " directory) carries its scalers to the client",
                InputRangeWarning,
                stacklevel=3,
            )

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


def as_array(X) -> np.ndarray:
    """``X`` as a numpy array; a DataFrame as float64, its missing values (``pd.NA`` of a
    nullable column included) as NaN, which ``quantize_input`` refuses with its message."""
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        return X.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(X)


def target_statistic(value) -> float | np.ndarray:
    """A target mean or standard deviation read from JSON: a float, or a float64 array
    (n_outputs,) for one per output column."""
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value
