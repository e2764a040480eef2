"""Per-neuron weight scales: Brevitas' max-abs scale, or one chosen with the L1 budget.

Brevitas' per-channel weight quantizer (``Int8WeightPerChannelFloat``) scales each neuron's
weights by ``max|w| / largest``, ``largest`` the largest code magnitude (4 for signed 3-bit
codes), so every neuron's largest weight takes the extreme code. Under a tight accumulator
bound the L1 budget then holds few such products (3/3/6: about three inputs per neuron).
``weight_scaling="budget_mse"`` lets each neuron's largest weight take a smaller code ``m``
(``1 <= m <= largest``, scale ``max|w| / m``): coarser codes, more of them within the budget.
``L1BudgetMask`` picks ``m`` per neuron at every training step, the one whose selection
minimizes the neuron's squared weight error (the rounding error of the kept weights plus the
dropped weights); MSE-driven scale search as in Brevitas' ``Int8WeightPerChannelFloatMSE``,
with the accumulator budget in the loop (the per-neuron L1 bound of A2Q, Colbert et al. 2023).
The chosen codes live in the layer's ``weight_largest_code`` buffer (float (n_out,)), so
``quant_weight()``, the bias quantizer, the certificate and the integer model all read the
same scale.
"""

from __future__ import annotations

import weakref

import torch
from brevitas import nn as qnn
from brevitas.quant import Int8WeightPerChannelFloat, Int32Bias
from torch import nn

from concrete_qnn.accumulator import code_range

# How each neuron's weight scale is chosen (the module's ``weight_scaling``).
WEIGHT_SCALINGS = ("max", "budget_mse", "auto")
# "auto" chooses "budget_mse" under the L1 budget up to this n_accum_bits, "max" above:
# 5-fold means (benchmarks/RESULTS.md), budget_mse against max, 3/3 bits: at 6 bits it wins
# on all five benchmark datasets (breast_cancer 0.9754 / 0.9508, synthetic 0.8835 /
# 0.7845), at 7 on three of five, at 8 it loses diabetes' R^2 target (0.4494 / 0.4761).
AUTO_BUDGET_MSE_MAX_ACCUM_BITS = 7


class _LargestCodeSource:
    """What the quantizer reads its layer's ``weight_largest_code`` through (a weak
    reference: Brevitas rebuilds its quantizers from their injector, and a layer moved to
    another device holds a new buffer)."""

    def __init__(self, largest: int):
        self.largest = float(largest)
        self.layer = None

    def ratio(self) -> torch.Tensor | None:
        layer = None if self.layer is None else self.layer()
        return None if layer is None else self.largest / layer.weight_largest_code


class BudgetAbsMax(nn.Module):
    """Brevitas stats: per-channel ``max|w|``, times ``largest / m`` (so Brevitas' scale,
    the stats over ``largest``, is ``max|w| / m``)."""

    def __init__(self, stats_reduce_dim, largest_code_source):
        super().__init__()
        self.stats_reduce_dim = stats_reduce_dim
        self.source = largest_code_source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        absmax = torch.max(torch.abs(x), dim=self.stats_reduce_dim)[0]
        ratio = self.source.ratio()
        return absmax if ratio is None else absmax * ratio.to(absmax)


class BudgetScaledWeightQuant(Int8WeightPerChannelFloat):
    """``Int8WeightPerChannelFloat`` whose per-channel max-abs stats are divided by each
    neuron's chosen largest code (``BudgetAbsMax``)."""

    scaling_stats_impl = BudgetAbsMax


def budget_scaled_linear(n_in: int, n_out: int, n_w_bits: int, narrow: bool) -> qnn.QuantLinear:
    """A Brevitas ``QuantLinear`` (``Int32Bias``) whose weight scale follows its
    ``weight_largest_code`` buffer, float (n_out,), initially the largest code (Brevitas'
    max-abs scale)."""
    low, high = code_range(n_w_bits, signed=True, narrow=narrow)
    source = _LargestCodeSource(max(-low, high))
    layer = qnn.QuantLinear(
        n_in,
        n_out,
        bias=True,
        weight_quant=BudgetScaledWeightQuant,
        weight_bit_width=n_w_bits,
        weight_narrow_range=narrow,
        weight_largest_code_source=source,
        bias_quant=Int32Bias,
    )
    layer.register_buffer("weight_largest_code", torch.full((n_out,), source.largest))
    source.layer = weakref.ref(layer)
    return layer
