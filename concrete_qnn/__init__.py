"""concrete-qnn: quantized neural networks with a proven accumulator bit-width.

The integer model (``load``, ``IntegerModel``) needs numpy only: the torch-based names
(estimators, the module) are imported on first use, so loading a saved model and
predicting never imports torch.
"""

import importlib

from concrete_qnn.certificate import AccumulatorCertificate, LayerCertificate
from concrete_qnn.integer import IntegerModel, load

_TORCH_NAMES = {
    "QNNClassifier": "concrete_qnn.estimators",
    "QNNRegressor": "concrete_qnn.estimators",
    "SparseQuantNeuralNetwork": "concrete_qnn.nn.network",
    "MAX_BITWIDTH_BACKWARD_COMPATIBLE": "concrete_qnn.config",
}

__all__ = [
    "MAX_BITWIDTH_BACKWARD_COMPATIBLE",
    "AccumulatorCertificate",
    "IntegerModel",
    "LayerCertificate",
    "QNNClassifier",
    "QNNRegressor",
    "SparseQuantNeuralNetwork",
    "load",
]


def __getattr__(name):
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module 'concrete_qnn' has no attribute {name!r}")
