"""How the estimators train: skorch callbacks (``callbacks``) and ``batch_size="auto"``
(``batching``)."""

from concrete_qnn.training.batching import auto_batch_size, auto_learning_rate_factor
from concrete_qnn.training.callbacks import AccumulatorPruning, CosineLearningRate

__all__ = [
    "AccumulatorPruning",
    "CosineLearningRate",
    "auto_batch_size",
    "auto_learning_rate_factor",
]
