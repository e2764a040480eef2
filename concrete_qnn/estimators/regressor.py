"""QNNRegressor: a skorch regressor whose network runs within a proven accumulator width."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNet, NeuralNetRegressor

from concrete_qnn.estimators.base import QNNEstimatorBase
from concrete_qnn.estimators.export import FittedModelMethods
from concrete_qnn.estimators.parameters import estimator_init
from concrete_qnn.integer import OutputHead


class QNNRegressor(FittedModelMethods, QNNEstimatorBase, NeuralNetRegressor):
    """Regressor whose network runs within ``module__n_accum_bits`` accumulators.

    ``y`` may be 1-D (n_samples,) or 2-D (n_samples, n_targets), in any units: each
    target column is standardized for training (mean and standard deviation learned in
    the first training call, weighted by ``sample_weight``; a constant column keeps
    standard deviation 1), and the integer model turns outputs back into the target's
    units, in memory and in its saved file. ``predict`` returns the dimensionality of
    the fitted ``y``. During ``fit``, skorch's callbacks see the standardized targets
    and ``predict`` answers for the network being trained, in standardized units.
    Other parameters as ``QNNClassifier``.

    Attributes
    ----------
    target_mean_, target_std_ : float64 ndarray (n_targets,)
        The standardization of each target column, in the target's units.
    """

    __init__ = estimator_init(torch.nn.MSELoss)

    def _validate_targets(self, y, reset, classes=None, sample_weight=None):
        y = np.asarray(y, dtype=np.float64)
        if reset:
            self.target_ndim_ = y.ndim
        elif y.ndim != self.target_ndim_:
            raise ValueError(f"y has {y.ndim} dimensions, the first fit had {self.target_ndim_}")
        y = y.reshape(len(y), -1)
        if reset:
            scaler = StandardScaler().fit(y, sample_weight=sample_weight)
            self.target_mean_, self.target_std_ = scaler.mean_, scaler.scale_
        elif y.shape[1] != len(self.target_mean_):
            raise ValueError(
                f"y has {y.shape[1]} target columns, the first fit had {len(self.target_mean_)}"
            )
        standardized = (y - self.target_mean_) / self.target_std_
        return standardized.astype(np.float32), y.shape[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @property
    def predict_proba(self):
        """Not available: a regressor has no class probabilities."""
        raise AttributeError("QNNRegressor has no predict_proba; use predict")

    def _output_head(self) -> OutputHead:
        return OutputHead(
            "regression",
            target_ndim=self.target_ndim_,
            target_mean=self.target_mean_,
            target_std=self.target_std_,
        )

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """float64 predictions in the target's units from the integer model,
        (n_samples,) when fitted on 1-D y, else (n_samples, n_targets); ``fhe`` as in
        ``QNNClassifier.predict_proba``. During ``fit``: the network being trained,
        float32 (n_samples, n_targets) in standardized units."""
        return self._predicted(X, fhe, NeuralNet.predict_proba, "predictions")
