"""How the estimators train: skorch callbacks (``callbacks``), what a fit says while it
runs (``progress``) and ``batch_size="auto"`` (``batching``)."""

from concrete_qnn.training.batching import auto_batch_size, auto_learning_rate_factor
from concrete_qnn.training.callbacks import AccumulatorPruning, CosineLearningRate
from concrete_qnn.training.progress import EpochProgressBar, LongFitNotice

__all__ = [
    "AccumulatorPruning",
    "CosineLearningRate",
    "EpochProgressBar",
    "LongFitNotice",
    "auto_batch_size",
    "auto_learning_rate_factor",
]
