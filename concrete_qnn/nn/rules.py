"""Accumulator rules: how training keeps every neuron's accumulator within ``n_accum_bits``.

A rule is a small object behind one interface (``AccumulatorRule``): it refuses a
configuration under which not even one weight fits, says whether inputs finer than the
activations can fit, and builds one weight mask per linear layer (``nn.masks``). Whatever
the rule, ``make_pruning_permanent`` then certifies the result exactly (``certificate``),
so a rule is a training device and the certificate is the judge. ``ACCUMULATOR_RULES``
maps each ``accumulator_rule`` name to its rule; a new rule is one more class here and one
more entry there.
"""

from __future__ import annotations

import warnings

import numpy as np

from concrete_qnn.accumulator import max_fan_in, signed_range
from concrete_qnn.exceptions import InvalidParameterError
from concrete_qnn.nn.masks import FanInMask, L1BallMask, L1BudgetMask, NeuronMask


class AccumulatorRule:
    """The interface of a rule (the configuration is a ``config.NetworkConfig``).

    Attributes
    ----------
    name : str
        The ``accumulator_rule`` value that selects it.
    finer_inputs_fit : bool
        Whether ``n_input_bits="auto"`` may give inputs finer codes than ``n_a_bits``.
    counts_bias : bool
        Whether its masks read each neuron's bias (``NeuronMask.bias_units``), which the
        network then sets before every forward pass while pruning is enabled.
    scales_with_budget : bool
        Whether its masks can choose each neuron's weight scale too
        (``weight_scaling="budget_mse"``, which ``"auto"`` picks below 8-bit bounds).
    owns_weight_scale : bool
        Whether its masks always choose each neuron's weight scale, whatever
        ``weight_scaling`` says (``weight_scaling_used`` is then ``"budget_mse"``: the layers
        hold ``weight_largest_code``).
    """

    name: str
    finer_inputs_fit: bool
    counts_bias: bool
    scales_with_budget: bool
    owns_weight_scale: bool = False

    def validate(self, config) -> None:
        """Raise ``InvalidParameterError`` if not even one weight fits the bound. Runs when
        the configuration is made (``NetworkConfig``), before any layer is built."""
        raise NotImplementedError

    def masks(self, config, layers) -> list[NeuronMask]:
        """One mask per linear layer (Brevitas ``QuantLinear``, first to last). Runs when
        pruning is enabled (``pruning.enable_pruning``, at the start of every fit)."""
        raise NotImplementedError


class FanInRule(AccumulatorRule):
    """At most ``max_active_neurons()`` non-zero weights per neuron, its largest by
    magnitude (``FanInMask``): every weight and input counted at its extreme code."""

    name = "fan_in"
    finer_inputs_fit = False  # every code counts at its extreme: finer inputs cut the fan-in
    counts_bias = False
    scales_with_budget = False

    def validate(self, config) -> None:
        self.fan_in_cap(config)

    @staticmethod
    def fan_in_cap(config) -> int:
        """``config.max_active_neurons()``, refused when it is 0."""
        cap = config.max_active_neurons()
        if cap == 0:
            raise InvalidParameterError(
                f"n_accum_bits={config.n_accum_bits} is too small for n_w_bits="
                f"{config.n_w_bits} and {config.bits_text}: not even one weight-input product "
                "fits; raise n_accum_bits or lower the bit-widths"
            )
        return cap

    def masks(self, config, layers) -> list[NeuronMask]:
        cap = self.fan_in_cap(config)
        return [FanInMask(fc.out_features, fc.in_features, cap) for fc in layers]


class L1BudgetRule(AccumulatorRule):
    """The largest weights whose codes, weighted by the codes each input reaches, fit with
    the bias (``L1BudgetMask``): a per-neuron L1 bound as in A2Q (Colbert et al. 2023,
    "A2Q: Accumulator-Aware Quantization with Guaranteed Overflow Avoidance"), met by
    selection, so many small weights fit where few large ones do."""

    name = "l1_budget"
    finer_inputs_fit = True
    counts_bias = True
    scales_with_budget = True

    def validate(self, config) -> None:
        # Brevitas' max-abs scale gives each neuron's largest weight the code
        # +-weight_code_range[1], and the L1 budget keeps it: how many such products fit
        # is max_fan_in over those two codes. budget_mse may give it the code 1.
        budget_mse = config.weight_scaling_used == "budget_mse"
        largest_weight = 1 if budget_mse else config.weight_code_range[1]
        label = "weight at its smallest code" if largest_weight == 1 else "weight code"
        accum_high = signed_range(config.n_accum_bits)[1]
        for layer, (low, high) in enumerate(config.budget_input_ranges()[:2]):
            where = "the first layer's" if layer == 0 else "a hidden layer's"
            largest_input = max(-low, high)
            fits = max_fan_in((-largest_weight, largest_weight), (low, high), config.n_accum_bits)
            if fits == 0:
                raise InvalidParameterError(
                    f"n_accum_bits={config.n_accum_bits} is too small for n_w_bits="
                    f"{config.n_w_bits} and {config.bits_text}: a neuron's largest {label} "
                    f"({largest_weight}) times {where} largest input code "
                    f"({largest_input}) is {largest_weight * largest_input}, over "
                    f"{accum_high}, so no weight fits the L1 budget; raise n_accum_bits "
                    "or lower the bit-widths"
                )
            # Hidden layers only: "auto" input bits may fill the first layer's budget
            # with one such product on purpose (few features, each weighted alone).
            if fits == 1 and layer > 0:
                warnings.warn(
                    f"n_accum_bits={config.n_accum_bits} holds one weight of the largest code "
                    f"per neuron on {where} inputs at most ({largest_weight} x "
                    f"{largest_input} of {accum_high}): neurons keep one or two weights "
                    "and such networks often predict a constant (breast_cancer at "
                    "n_w_bits=3, n_a_bits=3, n_accum_bits=5, and at n_w_bits=6 with 8 "
                    "bits: 0.627, the majority class); lower the bit-widths or raise "
                    "n_accum_bits",
                    stacklevel=5,  # the caller of SparseQuantNeuralNetwork(...)
                )

    def masks(self, config, layers) -> list[NeuronMask]:
        ranges = config.budget_input_ranges()
        return [
            self.mask(config, fc, low, high) for fc, (low, high) in zip(layers, ranges, strict=True)
        ]

    def mask(self, config, fc, low: int, high: int) -> NeuronMask:
        """The mask of one layer ``fc`` whose inputs reach the codes ``[low, high]``."""
        budget_mse = config.weight_scaling_used == "budget_mse"
        return L1BudgetMask(*_budget(config, fc, low, high), layer=fc if budget_mse else None)


class A2QRule(L1BudgetRule):
    """Every weight trained inside its neuron's L1 ball (``L1BallMask``): A2Q's construction
    (Colbert et al. 2023; round toward zero, a per-neuron scale bounded by the budget) on the
    certificate's exact interval, bias included, with A2Q+'s zero-centred weights (Colbert
    et al. 2024) where a layer's inputs are never negative (and it has two or more). Nothing
    is selected: small weights round to 0 of themselves. Its masks choose every neuron's
    scale (the largest weight's code may be as small as 1), whatever ``weight_scaling``
    says, so it refuses what ``L1BudgetRule`` refuses under ``weight_scaling="budget_mse"``."""

    name = "a2q"
    owns_weight_scale = True

    def mask(self, config, fc, low: int, high: int) -> NeuronMask:
        zero_center = low >= 0 and fc.in_features > 1  # one input centred is 0
        return L1BallMask(*_budget(config, fc, low, high), layer=fc, zero_center=zero_center)


def _budget(config, fc, low: int, high: int) -> tuple:
    """The budget masks' first arguments for layer ``fc``: its shape, the weight codes, each
    input's reachable codes ``[low, high]`` and the accumulator's range."""
    return (
        fc.out_features,
        fc.in_features,
        config.weight_code_range,
        np.full(fc.in_features, low),
        np.full(fc.in_features, high),
        signed_range(config.n_accum_bits),
    )


# Each accumulator_rule name and its rule, in the order messages list them.
ACCUMULATOR_RULES: dict[str, AccumulatorRule] = {
    rule.name: rule for rule in (FanInRule(), L1BudgetRule(), A2QRule())
}
