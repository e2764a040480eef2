"""Learned lookups: each hidden neuron's table holds a function it learned.

Under FHE a hidden neuron's activation is one table lookup over its (rounded) accumulator,
and a table costs the same whatever it holds. ``LearnedLookup`` lets training choose that
function per neuron: a piecewise-linear function over the accumulator's certified range,
started at the fixed activation (``torch.nn.ReLU``: exactly ReLU at the start), its values at
evenly spaced knots learned with the weights. A non-monotone function (a bump, a step up then
down) separates regions that a monotone ReLU needs several neurons for. After a non-negative
activation (ReLU) its output is kept non-negative, so the next layer's accumulator budget
reads the same input codes as after that activation.
"""

from __future__ import annotations

import torch
from torch import nn

# learned_lookups="auto" learns the lookups of data with at most this many features. Measured
# by benchmarks/FRONTIER.md (5 folds, 8-bit bound): on the 7 datasets of 2 to 6 features they
# gain on 6 (6 x 6 checkerboard 0.603 -> 0.872, friedman3 0.903 -> 0.924, circles, swiss roll,
# Gaussian quantiles, friedman2) and lose 0.013 on the 150-row one; on the 7 of 10 to 64
# features they are mixed (diabetes 0.476 -> 0.443, breast_cancer 0.9719 -> 0.9649, digits
# 0.9722 -> 0.9772).
AUTO_MAX_FEATURES = 8

# Knots of each neuron's function over the accumulator range [-2^(n-1), 2^(n-1)): 33 knots,
# one every 1/16 of the half range, so a 5-bit lookup's 32 buckets each hold one segment.
N_KNOTS = 33


class LearnedLookup(nn.Module):
    """Per-neuron piecewise-linear activation, learned (a table lookup under FHE).

    Neuron ``j``'s output on its accumulator's real value ``z`` is
    ``unit_j * g_j(z / unit_j)`` (clipped at 0 when ``non_negative``), where
    ``unit_j = s_j * 2^(n_accum_bits - 1)`` is the real value of half the accumulator range
    (``s_j``: the real value of one accumulator unit) and ``g_j`` interpolates linearly
    between learned values at ``N_KNOTS`` evenly spaced knots over ``[-1, 1]``. ``g_j``
    starts at ``activation(knots)``: with a positively homogeneous activation (ReLU) the
    module then computes exactly that activation, whatever the scales. Learned deviations
    from it are ``offsets`` (float (width, N_KNOTS)), so weight decay pulls each function
    back toward the fixed activation. The parametrization, values at a uniform grid
    interpolated linearly, is that of the Piecewise Linear Unit (Zhou et al., ICCV 2021,
    "Learning Specialized Activation Functions with the Piecewise Linear Unit"), here per
    neuron and over the accumulator's proven range, which the table then covers.

    Parameters
    ----------
    width : int
        Neurons of the layer.
    activation_function : type of torch.nn.Module
        The fixed activation the functions start from.
    non_negative : bool
        Clip the output at 0 (``activation_function`` is never negative).
    """

    def __init__(self, width: int, activation_function=nn.ReLU, non_negative: bool = True):
        super().__init__()
        with torch.no_grad():
            start = activation_function()(torch.linspace(-1.0, 1.0, N_KNOTS))
        self.register_buffer("start", start)
        self.non_negative = non_negative
        self.offsets = nn.Parameter(torch.zeros(width, N_KNOTS))

    @property
    def width(self) -> int:
        return self.offsets.shape[0]

    def forward(self, z: torch.Tensor, unit: torch.Tensor, neurons=slice(None)) -> torch.Tensor:
        """The functions of ``neurons`` on ``z``.

        Parameters
        ----------
        z : float tensor (N, n)
            Accumulators' real values, one column per neuron of ``neurons``.
        unit : float tensor (n,)
            Real value of half each neuron's accumulator range (see the class).
        neurons : slice or index tensor
            Which of the layer's neurons the columns are (all by default).

        Returns
        -------
        float tensor (N, n)
        """
        unit = unit.detach().reshape(1, -1)
        position = ((z / unit).clamp(-1.0, 1.0) + 1.0) * ((N_KNOTS - 1) / 2.0)
        left = position.detach().floor().clamp(0, N_KNOTS - 2).long()
        fraction = position - left
        values = (self.start + self.offsets[neurons]).reshape(-1)  # neuron by neuron
        index = left + torch.arange(left.shape[1], device=z.device) * N_KNOTS
        low, high = values.take(index), values.take(index + 1)
        output = unit * (low + fraction * (high - low))
        return torch.relu(output) if self.non_negative else output

    def keep(self, neurons: torch.Tensor) -> LearnedLookup:
        """A copy holding only ``neurons`` (bool (width,)), for structured pruning."""
        kept = LearnedLookup(int(neurons.sum()), non_negative=self.non_negative)
        kept.start.copy_(self.start)
        with torch.no_grad():
            kept.offsets.copy_(self.offsets[neurons])
        return kept.to(self.offsets.device)


def make_activation(config, width: int) -> nn.Module:
    """A fresh activation for a hidden layer of ``width`` neurons of a network configured by
    ``config`` (``NetworkConfig``): the fixed ``activation_function``, or a
    ``LearnedLookup`` starting from it where ``config.learned_lookups_used``."""
    if config.learned_lookups_used:
        return LearnedLookup(width, config.activation_function, config.activation_non_negative)
    return config.activation_function()


def activate(net, layer: int, z: torch.Tensor, scale, neurons=slice(None)) -> torch.Tensor:
    """Hidden layer ``layer``'s activation in ``net`` of accumulators' real values ``z``
    (float (N, n), one column per neuron of ``neurons``), ``scale`` (float (n_out,), or None
    for a fixed activation) being each neuron's real value of one accumulator unit
    (``quantizers.accumulator_scale``): what the forward pass and the tables compute."""
    activation = getattr(net, f"act{layer}")
    if isinstance(activation, LearnedLookup):
        unit = scale.reshape(-1)[neurons] * 2.0 ** (net.n_accum_bits - 1)
        return activation(z, unit, neurons)
    return activation(z)
