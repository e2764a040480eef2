"""concrete-qnn: quantized neural networks with a proven accumulator bit-width."""

from concrete_qnn.certificate import AccumulatorCertificate, LayerCertificate
from concrete_qnn.estimators import QNNClassifier, QNNRegressor
from concrete_qnn.qnn_module import MAX_BITWIDTH_BACKWARD_COMPATIBLE, SparseQuantNeuralNetwork

__all__ = [
    "MAX_BITWIDTH_BACKWARD_COMPATIBLE",
    "AccumulatorCertificate",
    "LayerCertificate",
    "QNNClassifier",
    "QNNRegressor",
    "SparseQuantNeuralNetwork",
]
