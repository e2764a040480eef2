"""The network's Brevitas quantizers: inputs, activations, weights (two scalings), biases.

Quantizers are Brevitas' own, declared with its injectors: ``Int8ActPerTensorFloat`` (or
``Uint8ActPerTensorFloat`` for unsigned codes) for inputs and activations, whose learned scale
starts at the ``ACTIVATION_SCALE_PERCENTILE`` percentile; ``Int8WeightPerChannelFloat`` for
weights; ``Int32Bias`` for biases, in accumulator units.

Per-neuron weight scales: Brevitas' max-abs scale, or one chosen with the L1 budget.

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
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int32Bias,
    Uint8ActPerTensorFloat,
)
from torch import nn

from concrete_qnn.accumulator import code_range

# Percentile of |activation| that initializes each activation quantizer's learned scale.
# Brevitas' default (99.999) lets outliers of standardized data push a 3-bit scale so far
# that most inputs quantize to 0 (digits: 0.44 train accuracy after 20 epochs vs 0.94).
ACTIVATION_SCALE_PERCENTILE = 99.0

# Codes of Brevitas' Int32Bias: biases are stored in accumulator units, saturated to 32 bits.
BIAS_CODE_RANGE = code_range(32, signed=True, narrow=False)

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


def activation_quantizer(bit_width: int, signed: bool, narrow: bool) -> qnn.QuantIdentity:
    """The quantizer of a layer's inputs (``quant{i}``): Brevitas' per-tensor float scale,
    initialized at the ``ACTIVATION_SCALE_PERCENTILE`` percentile; returns a
    ``QuantTensor`` (values and scale)."""
    return qnn.QuantIdentity(
        act_quant=Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat,
        bit_width=bit_width,
        narrow_range=narrow,
        high_percentile_q=ACTIVATION_SCALE_PERCENTILE,
        return_quant_tensor=True,
    )


def quant_linear(
    n_in: int, n_out: int, n_w_bits: int, narrow: bool, weight_scaling: str
) -> qnn.QuantLinear:
    """A linear layer (``fc{i}``): ``n_w_bits`` signed per-channel weight codes whose scale
    is Brevitas' max-abs (``weight_scaling="max"``) or chosen with the L1 budget
    (``"budget_mse"``, ``budget_scaled_linear``), and ``Int32Bias`` biases."""
    if weight_scaling == "budget_mse":
        return budget_scaled_linear(n_in, n_out, n_w_bits, narrow)
    return qnn.QuantLinear(
        n_in,
        n_out,
        bias=True,
        weight_quant=Int8WeightPerChannelFloat,
        weight_bit_width=n_w_bits,
        weight_narrow_range=narrow,
        bias_quant=Int32Bias,
    )


def accumulator_scale(fc, input_scale) -> torch.Tensor:
    """Real value of one accumulator unit of each neuron of ``fc`` on inputs of scale
    ``input_scale``: ``s_w * s_x``, float (n_out,), detached."""
    with torch.no_grad():
        return (fc.quant_weight().scale.reshape(-1) * input_scale.reshape(-1)).detach()


def read_as_table(x, scale: torch.Tensor, shift: int) -> torch.Tensor:
    """What a table that drops ``shift`` low accumulator bits reads, with a straight-through
    gradient (Bengio et al. 2013, "Estimating or Propagating Gradients Through Stochastic
    Neurons").

    ``x`` (float (N, n_out), a hidden layer's output) with each accumulator
    ``A = x / scale`` (``scale``: ``accumulator_scale``) moved to the centre of its bucket
    ``floor(A / 2^shift)``; the gradient is the identity."""
    with torch.no_grad():
        accumulator = torch.round(x / scale)
        centre = (torch.floor(accumulator / 2**shift) * 2**shift + (2**shift - 1) / 2) * scale
    return x + (centre - x).detach()
