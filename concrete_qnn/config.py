"""The network's configuration: its defaults, their constraints, and what they resolve to.

``NetworkConfig`` is frozen: it is validated once, when it is made, and every value derived
from it (hidden width, code ranges, the input bits and weight scaling that ``"auto"``
resolves to, the fan-in cap) is computed from it alone. Constraints on single parameters are
declared as data (``PARAMETERS``); those that tie several together follow in
``NetworkConfig.__post_init__``, then the accumulator rule's own (``nn.rules``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from concrete_qnn.accumulator import auto_input_bits, code_range, max_fan_in
from concrete_qnn.constraints import (
    FLAG,
    Constraint,
    integer_at_least,
    is_integer,
    number_in,
    one_of,
)
from concrete_qnn.exceptions import InvalidParameterError
from concrete_qnn.nn.lookups import AUTO_MAX_FEATURES
from concrete_qnn.nn.quantizers import AUTO_BUDGET_MSE_MAX_ACCUM_BITS, WEIGHT_SCALINGS
from concrete_qnn.nn.rules import ACCUMULATOR_RULES

# The accumulator bound of the seed (and of the module's default): 8 signed bits.
MAX_BITWIDTH_BACKWARD_COMPATIBLE = 8


# Each parameter's own constraint, in the order they are checked.
PARAMETERS: dict[str, Constraint] = {
    "input_dim": integer_at_least(1),
    "n_layers": integer_at_least(1),
    "n_outputs": integer_at_least(1),
    "n_w_bits": integer_at_least(1),
    "n_a_bits": integer_at_least(1),
    "n_accum_bits": integer_at_least(1),
    "quant_narrow": FLAG,
    "quant_signed": FLAG,
    "n_hidden_neurons_min": integer_at_least(0),
    "n_hidden_neurons_multiplier": number_in(0),
    "n_prune_neurons_percentage": number_in(0, 1),
    "activation_function": Constraint(
        lambda value: isinstance(value, type) and issubclass(value, nn.Module),
        "a torch.nn.Module subclass such as torch.nn.ReLU",
    ),
    "n_input_bits": Constraint(
        lambda value: (
            value is None
            or (isinstance(value, str) and value == "auto")
            or (is_integer(value) and value >= 1)
        ),
        "None, 'auto' or an integer >= 1",
    ),
    "accumulator_rule": one_of(*ACCUMULATOR_RULES),
    "weight_scaling": one_of(*WEIGHT_SCALINGS),
    "learned_lookups": Constraint(
        lambda value: FLAG.accepts(value) or (isinstance(value, str) and value == "auto"),
        "True, False or 'auto'",
    ),
}
# Normalized once checked: integers as int, flags as bool (numpy's types included).
_CONVERSIONS = {
    **dict.fromkeys(
        ("input_dim", "n_layers", "n_outputs", "n_w_bits", "n_a_bits", "n_accum_bits"), int
    ),
    "n_hidden_neurons_min": int,
    "quant_narrow": bool,
    "quant_signed": bool,
    "learned_lookups": lambda value: value if isinstance(value, str) else bool(value),
    "n_input_bits": lambda value: int(value) if is_integer(value) else value,
}


@dataclass(frozen=True)
class NetworkConfig:
    """The constructor arguments of ``SparseQuantNeuralNetwork``, validated.

    See ``SparseQuantNeuralNetwork`` for each parameter's meaning.

    Raises
    ------
    InvalidParameterError
        A ``ValueError`` naming the parameter and its allowed values: a parameter outside
        its constraint (``PARAMETERS``), a hidden width below 1, a quantizer without a
        positive code, an activation that is not element-wise, ``"budget_mse"`` without
        the L1 budget, or a bound that holds not even one weight (``nn.rules``).
    """

    input_dim: int
    n_layers: int
    n_outputs: int
    n_hidden_neurons_multiplier: float = 4
    n_w_bits: int = 3
    n_a_bits: int = 3
    n_accum_bits: int = MAX_BITWIDTH_BACKWARD_COMPATIBLE
    n_prune_neurons_percentage: float = 0.0
    activation_function: type = nn.ReLU
    quant_narrow: bool = False
    quant_signed: bool = True
    accumulator_rule: str = "fan_in"
    n_hidden_neurons_min: int = 0
    n_input_bits: int | str | None = None
    weight_scaling: str = "max"
    learned_lookups: bool | str = False

    def __post_init__(self):
        for name, constraint in PARAMETERS.items():
            constraint.check(name, getattr(self, name))
            if name in _CONVERSIONS:  # frozen: set through object
                object.__setattr__(self, name, _CONVERSIONS[name](getattr(self, name)))
        if self.n_layers > 1:
            hidden = self.input_dim * self.n_hidden_neurons_multiplier
            if not np.isfinite(hidden) or max(int(hidden), self.n_hidden_neurons_min) < 1:
                raise InvalidParameterError(
                    "n_hidden_neurons_multiplier must make the hidden width "
                    f"max(int(input_dim * multiplier), n_hidden_neurons_min) >= 1, got "
                    f"input_dim={self.input_dim}, n_hidden_neurons_multiplier="
                    f"{self.n_hidden_neurons_multiplier} and n_hidden_neurons_min="
                    f"{self.n_hidden_neurons_min}"
                )
        _check_element_wise(self.activation_function)
        self._check_positive_codes()
        if self.weight_scaling == "budget_mse" and not self.rule.scales_with_budget:
            budgeting = " or ".join(
                f'"{name}"' for name, rule in ACCUMULATOR_RULES.items() if rule.scales_with_budget
            )
            raise InvalidParameterError(
                'weight_scaling="budget_mse" chooses scales with the L1 budget: it needs '
                f"accumulator_rule={budgeting}, got {self.accumulator_rule!r}"
            )
        self.rule.validate(self)

    def _check_positive_codes(self) -> None:
        """Every quantizer needs a positive code, or no weight or input carries a value."""
        if self.weight_code_range[1] < 1:
            raise InvalidParameterError(
                f"n_w_bits={self.n_w_bits} with quant_narrow={self.quant_narrow} gives signed "
                f"weight codes {list(self.weight_code_range)}, which have no positive code; "
                "use n_w_bits >= 2"
            )
        if self.activation_code_range[1] < 1:
            raise InvalidParameterError(
                f"n_a_bits={self.n_a_bits} with quant_signed={self.quant_signed} and "
                f"quant_narrow={self.quant_narrow} gives activation codes "
                f"{list(self.activation_code_range)}, which have no positive code; use "
                "n_a_bits >= 2 (or unsigned, not narrow, 1-bit activations)"
            )
        if isinstance(self.n_input_bits, int) and self.input_code_range[1] < 1:
            raise InvalidParameterError(
                f"n_input_bits={self.n_input_bits} with quant_signed={self.quant_signed} "
                f"and quant_narrow={self.quant_narrow} gives input codes "
                f"{list(self.input_code_range)}, which have no positive code; use "
                "n_input_bits >= 2"
            )

    def replace(self, **changes) -> NetworkConfig:
        """A new configuration with ``changes``, validated as a whole."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The parameters by name, in the constructor's order (values, not copies)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    # ------------------------------------------------------------------ derived values
    @property
    def rule(self):
        """The accumulator rule object (``nn.rules``) named by ``accumulator_rule``."""
        return ACCUMULATOR_RULES[self.accumulator_rule]

    @property
    def hidden_width(self) -> int:
        """Neurons of each hidden layer before structured pruning:
        ``max(int(input_dim * n_hidden_neurons_multiplier), n_hidden_neurons_min)``."""
        scaled = int(self.input_dim * self.n_hidden_neurons_multiplier)
        return max(scaled, self.n_hidden_neurons_min)

    @property
    def weight_code_range(self) -> tuple[int, int]:
        """Smallest and largest weight code (signed, ``quant_narrow``)."""
        return code_range(self.n_w_bits, signed=True, narrow=self.quant_narrow)

    @property
    def weight_scaling_used(self) -> str:
        """``weight_scaling`` resolved: ``"auto"`` gives ``"budget_mse"`` under
        ``"l1_budget"`` at ``n_accum_bits <= 7`` (``AUTO_BUDGET_MSE_MAX_ACCUM_BITS``), else
        ``"max"``; a rule that owns its scales (``"a2q"``) gives ``"budget_mse"``."""
        if self.rule.owns_weight_scale:
            return "budget_mse"
        if self.weight_scaling != "auto":
            return self.weight_scaling
        tight = self.n_accum_bits <= AUTO_BUDGET_MSE_MAX_ACCUM_BITS
        return "budget_mse" if tight and self.rule.scales_with_budget else "max"

    @property
    def learned_lookups_used(self) -> bool:
        """``learned_lookups`` resolved: ``"auto"`` learns the lookups of data with at most
        ``nn.lookups.AUTO_MAX_FEATURES`` (8) features, where they won the benchmark."""
        if self.learned_lookups == "auto":
            return self.input_dim <= AUTO_MAX_FEATURES
        return self.learned_lookups

    @property
    def input_bit_width(self) -> int:
        """Bits of the input quantizer ``quant0``: ``n_input_bits`` resolved (``None`` gives
        ``n_a_bits``; ``"auto"`` gives the rule's choice, ``accumulator.auto_input_bits``
        under the L1 budget)."""
        if self.n_input_bits is None:
            return self.n_a_bits
        if self.n_input_bits == "auto":
            if not self.rule.finer_inputs_fit:
                return self.n_a_bits
            return auto_input_bits(
                self.input_dim,
                self.weight_code_range,
                self.n_a_bits,
                self.n_accum_bits,
                self.quant_signed,
                self.quant_narrow,
                self.weight_scaling_used,
            )
        return self.n_input_bits

    @property
    def input_code_range(self) -> tuple[int, int]:
        """Smallest and largest code of the input quantizer ``quant0`` (the first layer's)."""
        return code_range(self.input_bit_width, signed=self.quant_signed, narrow=self.quant_narrow)

    @property
    def activation_code_range(self) -> tuple[int, int]:
        """Smallest and largest code of the later layers' input quantizers (``n_a_bits``)."""
        return code_range(self.n_a_bits, signed=self.quant_signed, narrow=self.quant_narrow)

    @property
    def bits_text(self) -> str:
        """The activation bits, and the input bits where they differ, for messages."""
        if self.input_bit_width == self.n_a_bits:
            return f"n_a_bits={self.n_a_bits}"
        return f"n_a_bits={self.n_a_bits} and n_input_bits={self.input_bit_width}"

    def max_active_neurons(self) -> int:
        """Largest fan-in ``k`` at which any weights and inputs fit ``n_accum_bits``.

        Any ``k`` weight codes times any ``k`` input codes, each anywhere in its range
        (``weight_code_range``; ``input_code_range`` for the first layer,
        ``activation_code_range`` for the others: the smaller cap of the two),
        sum inside the signed ``n_accum_bits`` range; the bias is not counted
        (``make_pruning_permanent`` clamps it). Signed 3/3/8 gives 7: products lie in
        [-12, 16] and 7 * 16 <= 127.

        The widely used ``floor((2^acc - 1) / ((2^w - 1) * (2^a - 1)))`` gives 5 there:
        it is loose for signed codes, whose magnitudes are about half of ``2^b - 1``, and
        unsound for unsigned activations, where it bounds the accumulator's magnitude
        by ``2^acc - 1`` although a signed accumulator holds only ``2^(acc-1) - 1``:
        at 3/3/8 unsigned it allows 5 inputs, and 5 * 4 * 7 = 140 > 127.
        """
        return min(
            max_fan_in(self.weight_code_range, codes, self.n_accum_bits)
            for codes in (self.input_code_range, self.activation_code_range)
        )

    @property
    def activation_non_negative(self) -> bool:
        """Whether ``activation_function`` never gives a negative value (ReLU): then neither
        do the learned lookups that start from it (``nn.lookups``)."""
        probe = torch.linspace(-1e4, 1e4, 20_001)
        with torch.no_grad():
            return bool((self.activation_function()(probe) >= 0).all())

    def budget_input_ranges(self) -> list[tuple[int, int]]:
        """Per linear layer, the input codes the L1 budget trains for: the input
        quantizer's for the first layer; the activation quantizer's for the others, from 0
        up when the activation is never negative (the certificate then reads the real
        tables)."""
        low, high = self.activation_code_range
        hidden = (max(low, 0) if self.activation_non_negative else low, high)
        return [self.input_code_range] + [hidden] * (self.n_layers - 1)


def _check_element_wise(activation_function: type) -> None:
    """Refuse an activation that mixes neurons (Softmax, LogSoftmax, ...): the integer
    model computes each hidden neuron's activation alone, as one table lookup."""
    name = getattr(activation_function, "__name__", repr(activation_function))
    probe = torch.linspace(-4.0, 4.0, 24).reshape(6, 4).T  # 4 rows, 6 neurons
    try:
        activation = activation_function().eval()
        with torch.no_grad():
            whole = activation(probe)
            by_neuron = torch.cat([activation(probe[:, [j]]) for j in range(6)], dim=1)
            by_row = torch.cat([activation(probe[[i]]) for i in range(4)], dim=0)
    except Exception as error:
        raise InvalidParameterError(
            f"activation_function {name} cannot be applied to a (4, 6) tensor: {error}"
        ) from None
    if not (
        whole.shape == probe.shape
        # Loose enough for a vectorized kernel's rounding (torch's GELU differs by 2e-3 in
        # its tail between a (4, 6) tensor and its columns), far below any mixing.
        and torch.allclose(whole, by_neuron, rtol=1e-2, atol=1e-4)
        and torch.allclose(whole, by_row, rtol=1e-2, atol=1e-4)
    ):
        raise InvalidParameterError(
            f"activation_function must act on each value alone (element-wise), as each "
            f"hidden neuron's table lookup does: {name} mixes the values of a layer"
        )
