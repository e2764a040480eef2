"""The 0.1 import path of the training callbacks; they live in ``concrete_qnn.training``."""

from concrete_qnn.training.callbacks import AccumulatorPruning, CosineLearningRate

__all__ = ["AccumulatorPruning", "CosineLearningRate"]
