"""The 0.1 import path of the network, now in ``concrete_qnn.nn`` (and ``concrete_qnn.config``).

Kept so that code and pickles written against 0.1 keep working: a pickled network names
``concrete_qnn.qnn_module._rebuild_network``.
"""

from concrete_qnn.config import MAX_BITWIDTH_BACKWARD_COMPATIBLE
from concrete_qnn.nn.masks import FanInMask, L1BudgetMask, NeuronMask
from concrete_qnn.nn.network import SparseQuantNeuralNetwork
from concrete_qnn.nn.quantizers import ACTIVATION_SCALE_PERCENTILE, BIAS_CODE_RANGE
from concrete_qnn.nn.rules import ACCUMULATOR_RULES
from concrete_qnn.nn.state import rebuild_network as _rebuild_network

__all__ = [
    "ACCUMULATOR_RULES",
    "ACTIVATION_SCALE_PERCENTILE",
    "BIAS_CODE_RANGE",
    "MAX_BITWIDTH_BACKWARD_COMPATIBLE",
    "FanInMask",
    "L1BudgetMask",
    "NeuronMask",
    "SparseQuantNeuralNetwork",
    "_rebuild_network",
]
