"""The 0.1 import path of the weight-scaling quantizers, now in ``concrete_qnn.nn.quantizers``."""

from concrete_qnn.nn.quantizers import (
    AUTO_BUDGET_MSE_MAX_ACCUM_BITS,
    WEIGHT_SCALINGS,
    BudgetAbsMax,
    BudgetScaledWeightQuant,
    budget_scaled_linear,
)

__all__ = [
    "AUTO_BUDGET_MSE_MAX_ACCUM_BITS",
    "WEIGHT_SCALINGS",
    "BudgetAbsMax",
    "BudgetScaledWeightQuant",
    "budget_scaled_linear",
]
