"""QNNClassifier and QNNRegressor: skorch estimators around SparseQuantNeuralNetwork.

``base`` holds the skorch plumbing, ``validation`` the checks made before training,
``lifecycle`` the fitted model's lifecycle (``load_params`` included), ``export`` the fitted
model's public methods (predictions under FHE, ``compile``, ``save_fhe``, ``export_onnx``,
``save``, ``prune``), ``parameters`` the defaults (``max_epochs="auto"`` included);
``concrete_qnn.training`` the callbacks and ``batch_size="auto"``.
"""

from concrete_qnn.estimators.classifier import QNNClassifier
from concrete_qnn.estimators.lifecycle import COARSE_LOOKUP_BITS
from concrete_qnn.estimators.parameters import (
    DEFAULT_HIDDEN_NEURONS_MIN,
    DEFAULT_HIDDEN_NEURONS_MULTIPLIER,
    DEFAULT_MAX_EPOCHS,
    DEFAULT_ROUNDING_THRESHOLD_BITS,
    LEARNED_LOOKUPS_MAX_EPOCHS,
    auto_max_epochs,
)
from concrete_qnn.estimators.regressor import QNNRegressor
from concrete_qnn.training.batching import (
    AUTO_BATCH_ROWS,
    AUTO_MAX_LR_BATCH,
    AUTO_MIN_STEPS,
    auto_batch_size,
    auto_learning_rate_factor,
)

__all__ = [
    "AUTO_BATCH_ROWS",
    "AUTO_MAX_LR_BATCH",
    "AUTO_MIN_STEPS",
    "COARSE_LOOKUP_BITS",
    "DEFAULT_HIDDEN_NEURONS_MIN",
    "DEFAULT_HIDDEN_NEURONS_MULTIPLIER",
    "DEFAULT_MAX_EPOCHS",
    "DEFAULT_ROUNDING_THRESHOLD_BITS",
    "LEARNED_LOOKUPS_MAX_EPOCHS",
    "QNNClassifier",
    "QNNRegressor",
    "auto_batch_size",
    "auto_learning_rate_factor",
    "auto_max_epochs",
]
