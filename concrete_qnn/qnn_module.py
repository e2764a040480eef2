"""Sparse quantized MLP whose pruning keeps every neuron's accumulator within a bit-width."""

from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings
import weakref

import numpy as np
import torch
import torch.nn.utils.parametrize as parametrize
from brevitas import nn as qnn
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int32Bias,
    Uint8ActPerTensorFloat,
)
from torch import nn

from concrete_qnn.accumulator import (
    accumulator_bounds,
    auto_input_bits,
    code_range,
    lookup_bits_per_layer,
    lsbs_to_remove,
    max_fan_in,
    signed_range,
)
from concrete_qnn.certificate import AccumulatorCertificate, LayerCertificate, certify_network
from concrete_qnn.integer_model import CONFIG_KEYS, MAX_LOOKUP_BITS, IntegerModel, OutputHead
from concrete_qnn.weight_scaling import (
    AUTO_BUDGET_MSE_MAX_ACCUM_BITS,
    WEIGHT_SCALINGS,
    budget_scaled_linear,
)

MAX_BITWIDTH_BACKWARD_COMPATIBLE = 8

# Percentile of |activation| that initializes each activation quantizer's learned scale.
# Brevitas' default (99.999) lets outliers of standardized data push a 3-bit scale so far
# that most inputs quantize to 0 (digits: 0.44 train accuracy after 20 epochs vs 0.94).
ACTIVATION_SCALE_PERCENTILE = 99.0

# Table entries computed at once in to_integer_model: bounds its temporaries (~64 MB).
_TABLE_CHUNK_ENTRIES = 2**20

# Weight codes computed at once by weight_scaling="budget_mse" (candidate largest codes
# times selected weights): bounds its temporaries, so 8-bit weights (128 candidates) do
# not hold 128 copies of a wide layer.
_CODE_CHUNK_ENTRIES = 2**18

# Codes of Brevitas' Int32Bias: biases are stored in accumulator units, saturated to 32 bits.
BIAS_CODE_RANGE = code_range(32, signed=True, narrow=False)


class NeuronMask(nn.Module):
    """Weight parametrization: structured masks, then a per-neuron selection of weights.

    Structurally pruned rows (this layer's neurons) and columns (the previous layer's
    pruned neurons) are hard zeros. The selection (``keep``, defined by each rule) is
    re-chosen at every forward pass from the dense weights and uses a straight-through
    gradient, so a dropped weight keeps learning and comes back when it outgrows a kept one.

    Buffers ``row_keep`` (n_out,) and ``col_keep`` (n_in,) hold 1.0 for kept units.
    """

    def __init__(self, n_out: int, n_in: int):
        super().__init__()
        self.register_buffer("row_keep", torch.ones(n_out))
        self.register_buffer("col_keep", torch.ones(n_in))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        weight = weight * self.row_keep[:, None] * self.col_keep[None, :]
        keep = self.keep(weight.detach())
        if keep is None:
            return weight
        return weight + (weight * keep - weight).detach()

    def keep(self, weight: torch.Tensor) -> torch.Tensor | None:
        """1.0 for each weight kept, float (n_out, n_in); None keeps every weight."""
        raise NotImplementedError


class FanInMask(NeuronMask):
    """The fan-in rule: the top-``max_fan_in`` weights by magnitude in each row."""

    def __init__(self, n_out: int, n_in: int, max_fan_in: int):
        super().__init__(n_out, n_in)
        self.max_fan_in = max_fan_in

    def keep(self, weight: torch.Tensor) -> torch.Tensor | None:
        if self.max_fan_in >= weight.shape[1]:
            return None
        kept = weight.abs().topk(self.max_fan_in, dim=1).indices
        return torch.zeros_like(weight).scatter_(1, kept, 1.0)


class L1BudgetMask(NeuronMask):
    """The L1-budget rule: per row, the largest weights whose codes fit the accumulator.

    A neuron's accumulator stays in ``[accum_low, accum_high]`` for every reachable input
    when ``B + sum_i max(c_i * xmin_i, c_i * xmax_i) <= accum_high`` and likewise below
    (``DESIGN.md`` section 3): a budget on the weight codes ``c_i`` weighted by each input's
    reachable codes, a per-neuron L1 norm bound as in A2Q (Colbert et al. 2023, "A2Q:
    Accumulator-Aware Quantization with Guaranteed Overflow Avoidance"). Here it is met by
    selection rather than by A2Q's weight normalization: the weights are taken largest first
    (by magnitude), as long as the running interval fits, with the bias and without it (the
    FHE circuit holds the sum before the bias too), so many small codes fit where few large
    ones would. The largest weight is always kept (it sets the scale). Each non-zero code
    widens the interval by at least the narrowest input range, so a fitting selection holds
    at most ``max_nonzero_codes`` of them: only that many weights plus one, the largest
    (``topk``), are ranked, not the whole row (a full sort took 1.2 ms of 1.7 ms on a
    256 x 256 layer); past them every code is 0.

    Codes are computed as Brevitas' per-channel max-abs weight quantizer computes them:
    ``clip(round(w / s), wmin, wmax)`` with ``s = max|w_row| / max(-wmin, wmax)``. The bias,
    ``bias_units`` (bias / input scale, float (n_out,), set by the network before each
    forward) over the weight scale, counts against the budget. The selection is a training
    device: ``make_pruning_permanent`` certifies the result exactly and repairs what a
    rounding tie let through.

    Parameters
    ----------
    n_out, n_in : int
    weight_range : (int, int), the weight codes ``(wmin, wmax)``
    input_low, input_high : float arrays (n_in,), the codes each input reaches in training;
        each range holds 0 (``input_low <= 0 <= input_high``), as every code range does
    accum_range : (int, int), the signed ``n_accum_bits`` range
    layer : brevitas.nn.QuantLinear or None
        The masked layer, built by ``weight_scaling.budget_scaled_linear``, for
        ``weight_scaling="budget_mse"``: each row's scale is then chosen too (its largest
        weight's code ``m``, written to ``layer.weight_largest_code``; see
        ``concrete_qnn.weight_scaling``). None keeps Brevitas' max-abs scale.

    Raises
    ------
    ValueError
        If an input's range does not hold 0 (the selection relies on it).
    """

    def __init__(self, n_out, n_in, weight_range, input_low, input_high, accum_range, layer=None):
        super().__init__(n_out, n_in)
        if np.any(np.asarray(input_low) > 0) or np.any(np.asarray(input_high) < 0):
            raise ValueError("L1BudgetMask needs input code ranges that hold 0")
        self.weight_low, self.weight_high = (float(end) for end in weight_range)
        self.accum_low, self.accum_high = (float(end) for end in accum_range)
        # Each non-zero weight code widens a neuron's interval by at least the narrowest
        # input range: a selection that fits holds at most this many of them.
        span = float(np.min(np.asarray(input_high) - np.asarray(input_low)))
        width = self.accum_high - self.accum_low
        self.max_nonzero_codes = n_in if span <= 0 else min(n_in, int(width // span))
        self.register_buffer("input_low", torch.as_tensor(input_low).float(), persistent=False)
        self.register_buffer("input_high", torch.as_tensor(input_high).float(), persistent=False)
        self.register_buffer("positions", torch.arange(n_in), persistent=False)
        self.bias_units = None
        # A weak reference: the layer holds this mask as its parametrization.
        self._layer = None if layer is None else weakref.ref(layer)

    def keep(self, weight: torch.Tensor) -> torch.Tensor:
        largest = int(max(-self.weight_low, self.weight_high))
        # Only a prefix of each row's order can matter: one weight past the most non-zero
        # codes that fit (after a code 0 every code is 0 and adds nothing).
        n_top = min(weight.shape[1], self.max_nonzero_codes + 1)
        magnitude, order = weight.abs().topk(n_top, dim=1)
        ordered = weight.gather(1, order)  # each row's n_top largest, largest first
        absmax = magnitude[:, :1].clamp_min(1e-30)
        input_low, input_high = self.input_low[order], self.input_high[order]
        if self._layer is None:
            scale = absmax / largest
            n_keep = self._fitting_prefix(ordered, input_low, input_high, scale)[0]
            return self._kept(weight, order, n_keep)
        # weight_scaling="budget_mse": each row's largest code m is the one whose
        # selection fits and leaves the smallest squared weight error (ties: the finer
        # codes); a row where no selection fits takes m = 1, the smallest products. The
        # weights past n_top are dropped or take code 0 under every m, so their error
        # (their square) is left out. The candidates, largest first, are tried in chunks
        # (one tensor each) that bound the temporaries.
        candidates = torch.arange(largest, 0, -1).to(weight)
        chunk = max(1, _CODE_CHUNK_ENTRIES // ordered.numel())
        errors, n_keeps = [], []
        for codes in candidates.split(chunk):
            scale = absmax / codes[:, None, None]  # (n_codes, n_out, 1)
            n_keep, fits, rounded = self._fitting_prefix(ordered, input_low, input_high, scale)
            kept = self.positions[:n_top] < n_keep[..., None]
            error = torch.where(kept, ordered - scale * rounded, ordered).square().sum(-1)
            errors.append(torch.where(fits, error, torch.inf))
            n_keeps.append(n_keep)
        error, n_keep = torch.cat(errors), torch.cat(n_keeps)  # (largest, n_out)
        choice = error.argmin(0)  # the first minimum: the finer code
        choice = torch.where(error.isinf().all(0), largest - 1, choice)  # none fits: 1
        self._layer().weight_largest_code.copy_(candidates[choice])
        return self._kept(weight, order, n_keep.gather(0, choice[None])[0])

    def _fitting_prefix(self, ordered, input_low, input_high, scale):
        """How many weights of each row fit at the per-row ``scale`` (float (..., n_out,
        1)), from its ``ordered`` largest weights (float (n_out, n_top), by decreasing
        magnitude) and their inputs' code ranges (same shape): the count (int (...,
        n_out); at least 1, the largest weight is kept even where it alone does not fit;
        the row's width where all fit), whether they fit (bool (..., n_out)) and the
        codes of the ordered weights (float (..., n_out, n_top))."""
        codes = torch.round(ordered / scale).clamp(self.weight_low, self.weight_high)
        at_low, at_high = codes * input_low, codes * input_high
        high = torch.maximum(at_low, at_high).cumsum(-1)
        low = torch.minimum(at_low, at_high).cumsum(-1)
        room_high, room_low = self.accum_high, self.accum_low
        if self.bias_units is not None:  # the sum before the bias must fit too
            bias = torch.round(self.bias_units.to(ordered)[:, None] / scale)
            room_high, room_low = room_high - bias.clamp(min=0), room_low - bias.clamp(max=0)
        # Each input's range holds 0, so every weight widens the interval: the weights that
        # fit are a prefix of the order.
        n_fit = ((high <= room_high) & (low >= room_low)).sum(-1)
        n_keep = torch.where(n_fit == ordered.shape[-1], len(self.positions), n_fit.clamp_min(1))
        return n_keep, n_fit > 0, codes

    def _kept(self, weight, order, n_keep):
        """1.0 for each row's first ``n_keep`` (int (n_out,)) weights by magnitude (its
        ``order``, the n_top largest; every weight where ``n_keep`` is the row's width)."""
        kept = (self.positions[: order.shape[1]] < n_keep[:, None]).to(weight.dtype)
        selection = torch.zeros_like(weight).scatter_(1, order, kept)
        return torch.where((n_keep == weight.shape[1])[:, None], 1.0, selection)


# Rules that keep each neuron's accumulator within n_accum_bits during training.
ACCUMULATOR_RULES = ("fan_in", "l1_budget")


class SparseQuantNeuralNetwork(nn.Module):
    """Sparse quantized MLP compatible with FHE accumulator constraints.

    ``n_layers`` blocks ``quant{i}`` (Brevitas ``QuantIdentity``, ``n_a_bits``; ``quant0``,
    the input quantizer, ``input_bit_width``),
    ``fc{i}`` (Brevitas ``QuantLinear``, ``n_w_bits`` signed weights, bias quantized in
    accumulator units) and ``act{i}`` (``activation_function()``, not after the last
    block). Pruning (``enable_pruning`` then ``make_pruning_permanent``) guarantees that
    every neuron's integer accumulator fits ``n_accum_bits`` signed bits, for every input
    the quantizers can produce (see ``accumulator_certificate``).

    Parameters
    ----------
    input_dim : int
        Number of input features.
    n_layers : int
        Number of linear layers.
    n_outputs : int
        Number of output units (classes or regression targets).
    n_hidden_neurons_multiplier : float
        Hidden width is ``int(input_dim * n_hidden_neurons_multiplier)``, at least
        ``n_hidden_neurons_min``.
    n_w_bits, n_a_bits : int
        Bits of weight codes and of activation codes (and of input codes, unless
        ``n_input_bits`` says otherwise).
    n_accum_bits : int
        Largest signed bit-width any accumulator may need.
    n_prune_neurons_percentage : float in [0, 1)
        Fraction of each hidden layer's neurons removed by structured pruning.
    activation_function : type of torch.nn.Module
        Class instantiated between blocks (``torch.nn.ReLU``, ...).
    quant_narrow : bool
        Narrow-range codes for weights and activations (drop the extreme code).
    quant_signed : bool
        Signed activation codes.
    accumulator_rule : {"fan_in", "l1_budget"}
        How training keeps each neuron within ``n_accum_bits``. ``"fan_in"``: at most
        ``max_active_neurons()`` non-zero weights per neuron (``FanInMask``), every weight and
        input at its extreme. ``"l1_budget"``: the largest weights whose codes, weighted by
        the codes each input reaches (hidden inputs after a non-negative activation such as
        ReLU are never negative), fit with the bias (``L1BudgetMask``; A2Q's per-neuron L1
        bound, Colbert et al. 2023), so many small weights fit where few large ones do.
        Either way ``make_pruning_permanent`` certifies the result exactly.
    n_hidden_neurons_min : int >= 0
        Fewest neurons per hidden layer (before structured pruning); 0, the default, keeps
        the width ``input_dim * n_hidden_neurons_multiplier``. Few features make narrow
        layers that cannot bend a boundary (2 features give 8 neurons).
    n_input_bits : None, int >= 1 or "auto"
        Bits of the input quantizer's codes (``quant0``); ``None``, the default, uses
        ``n_a_bits`` (the seed's meaning). ``"auto"``, under ``"l1_budget"``, picks the
        finest codes at which each input can still hold a weight code of 1 within
        ``n_accum_bits`` (``accumulator.auto_input_bits``: 5 bits for 6 features at 3/3/8,
        3 bits for 30), and coarser codes than ``n_a_bits`` (down to 2 bits) where one
        extreme weight-input product alone would fill the accumulator (3/3/6); under
        ``"fan_in"``, whose cap counts every weight and input at its extreme code, finer
        inputs only cut the fan-in, and ``"auto"`` gives ``n_a_bits``. Where the weight
        scale follows the budget (``weight_scaling_used == "budget_mse"``), ``"auto"``
        instead leaves room for four weights of code +1 per neuron (3 bits at 5-bit bounds,
        4 at 6, ``n_accum_bits - 2``, at most 8).
        ``input_bit_width`` holds the bits used. The first layer's accumulator budget
        covers them, so the certificate still holds. (The fan-in cap is the smaller of the
        first layer's and the later layers'.)
    weight_scaling : {"max", "budget_mse", "auto"}
        How each neuron's weight scale is chosen. ``"max"``, the default: Brevitas'
        per-channel max-abs scale (the largest weight takes the extreme code).
        ``"budget_mse"``, under ``"l1_budget"`` only: each neuron's largest weight takes the
        code ``m`` (1 up to the extreme) whose L1-budget selection leaves the smallest
        squared weight error, re-chosen at every step (``concrete_qnn.weight_scaling``):
        coarser codes and more inputs per neuron where the bound is tight. The layers then
        hold ``weight_largest_code`` (float (n_out,)). ``"auto"`` (the estimators'
        default): ``"budget_mse"`` under ``"l1_budget"`` at ``n_accum_bits <= 7``, where it
        wins the benchmark, else ``"max"``; ``weight_scaling_used`` holds the choice.

    Raises
    ------
    ValueError
        If a parameter is outside its allowed range, a quantizer has no usable code, or
        not even one weight fits the accumulator (``"fan_in"``: ``max_active_neurons() ==
        0``; ``"l1_budget"``: a weight code of 1 times the largest input code does not fit).
    """

    def __init__(
        self,
        input_dim,
        n_layers,
        n_outputs,
        n_hidden_neurons_multiplier=4,
        n_w_bits=3,
        n_a_bits=3,
        n_accum_bits=MAX_BITWIDTH_BACKWARD_COMPATIBLE,
        n_prune_neurons_percentage=0.0,
        activation_function=nn.ReLU,
        quant_narrow=False,
        quant_signed=True,
        accumulator_rule="fan_in",
        n_hidden_neurons_min=0,
        n_input_bits=None,
        weight_scaling="max",
    ):
        super().__init__()
        self.input_dim = _positive_int("input_dim", input_dim)
        self.n_layers = _positive_int("n_layers", n_layers)
        self.n_outputs = _positive_int("n_outputs", n_outputs)
        self.n_w_bits = _positive_int("n_w_bits", n_w_bits)
        self.n_a_bits = _positive_int("n_a_bits", n_a_bits)
        self.n_accum_bits = _positive_int("n_accum_bits", n_accum_bits)
        self.n_hidden_neurons_multiplier = n_hidden_neurons_multiplier
        self.n_prune_neurons_percentage = n_prune_neurons_percentage
        self.activation_function = activation_function
        self.quant_narrow = _flag("quant_narrow", quant_narrow)
        self.quant_signed = _flag("quant_signed", quant_signed)
        self.accumulator_rule = accumulator_rule
        self.n_hidden_neurons_min = n_hidden_neurons_min
        self.n_input_bits = n_input_bits
        self.weight_scaling = weight_scaling
        self._validate()

        hidden = self.hidden_width
        widths = [self.input_dim] + [hidden] * (self.n_layers - 1) + [self.n_outputs]
        act_quant = Int8ActPerTensorFloat if self.quant_signed else Uint8ActPerTensorFloat
        for i in range(self.n_layers):
            quant = qnn.QuantIdentity(
                act_quant=act_quant,
                bit_width=self.input_bit_width if i == 0 else self.n_a_bits,
                narrow_range=self.quant_narrow,
                high_percentile_q=ACTIVATION_SCALE_PERCENTILE,
                return_quant_tensor=True,
            )
            setattr(self, f"quant{i}", quant)
            setattr(self, f"fc{i}", self._make_linear(widths[i], widths[i + 1]))
            if i < self.n_layers - 1:
                setattr(self, f"act{i}", self.activation_function())
        self.neurons_pruned = False
        self.pruning_repairs = {"weights_dropped": 0, "biases_clamped": 0}
        self._lookup_shifts = [0] * (self.n_layers - 1)  # set by rounded_lookups

    # ------------------------------------------------------------------ construction
    def _validate(self) -> None:
        if isinstance(self.n_hidden_neurons_min, bool) or not (
            isinstance(self.n_hidden_neurons_min, numbers.Integral)
            and self.n_hidden_neurons_min >= 0
        ):
            raise ValueError(
                f"n_hidden_neurons_min must be an integer >= 0, got {self.n_hidden_neurons_min!r}"
            )
        for name, expected in (
            ("n_hidden_neurons_multiplier", ">= 0"),
            ("n_prune_neurons_percentage", "in [0, 1)"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a number {expected}, got {value!r}")
        if self.n_hidden_neurons_multiplier < 0:
            raise ValueError(
                "n_hidden_neurons_multiplier must be a number >= 0, got "
                f"{self.n_hidden_neurons_multiplier!r}"
            )
        if self.n_layers > 1:
            hidden = self.input_dim * self.n_hidden_neurons_multiplier
            if not np.isfinite(hidden) or max(int(hidden), self.n_hidden_neurons_min) < 1:
                raise ValueError(
                    "n_hidden_neurons_multiplier must make the hidden width "
                    f"max(int(input_dim * multiplier), n_hidden_neurons_min) >= 1, got "
                    f"input_dim={self.input_dim}, n_hidden_neurons_multiplier="
                    f"{self.n_hidden_neurons_multiplier} and n_hidden_neurons_min="
                    f"{self.n_hidden_neurons_min}"
                )
        if not 0.0 <= self.n_prune_neurons_percentage < 1.0:
            raise ValueError(
                "n_prune_neurons_percentage must be in [0, 1), got "
                f"{self.n_prune_neurons_percentage}"
            )
        if not (
            isinstance(self.activation_function, type)
            and issubclass(self.activation_function, nn.Module)
        ):
            raise ValueError(
                "activation_function must be a torch.nn.Module subclass such as "
                f"torch.nn.ReLU, got {self.activation_function!r}"
            )
        self._check_element_wise()
        if self.weight_code_range[1] < 1:
            raise ValueError(
                f"n_w_bits={self.n_w_bits} with quant_narrow={self.quant_narrow} gives signed "
                f"weight codes {list(self.weight_code_range)}, which have no positive code; "
                "use n_w_bits >= 2"
            )
        if self.activation_code_range[1] < 1:
            raise ValueError(
                f"n_a_bits={self.n_a_bits} with quant_signed={self.quant_signed} and "
                f"quant_narrow={self.quant_narrow} gives activation codes "
                f"{list(self.activation_code_range)}, which have no positive code; use "
                "n_a_bits >= 2 (or unsigned, not narrow, 1-bit activations)"
            )
        if self.n_input_bits is not None and not (
            isinstance(self.n_input_bits, str) and self.n_input_bits == "auto"
        ):
            if (
                isinstance(self.n_input_bits, bool)
                or not isinstance(self.n_input_bits, numbers.Integral)
                or self.n_input_bits < 1
            ):
                raise ValueError(
                    "n_input_bits must be None, 'auto' or an integer >= 1, got "
                    f"{self.n_input_bits!r}"
                )
            if self.input_code_range[1] < 1:
                raise ValueError(
                    f"n_input_bits={self.n_input_bits} with quant_signed={self.quant_signed} "
                    f"and quant_narrow={self.quant_narrow} gives input codes "
                    f"{list(self.input_code_range)}, which have no positive code; use "
                    "n_input_bits >= 2"
                )
        if self.accumulator_rule not in ACCUMULATOR_RULES:
            raise ValueError(
                f"accumulator_rule must be one of {', '.join(map(repr, ACCUMULATOR_RULES))}, "
                f"got {self.accumulator_rule!r}"
            )
        if self.weight_scaling not in WEIGHT_SCALINGS:
            raise ValueError(
                f"weight_scaling must be one of {', '.join(map(repr, WEIGHT_SCALINGS))}, "
                f"got {self.weight_scaling!r}"
            )
        if self.weight_scaling == "budget_mse" and self.accumulator_rule != "l1_budget":
            raise ValueError(
                'weight_scaling="budget_mse" chooses scales with the L1 budget: it needs '
                f'accumulator_rule="l1_budget", got {self.accumulator_rule!r}'
            )
        if self.accumulator_rule == "fan_in":
            self._fan_in_cap()
        else:
            # Brevitas' max-abs scale gives each neuron's largest weight the code
            # +-weight_code_range[1], and the L1 budget keeps it: how many such products fit
            # is max_fan_in over those two codes. budget_mse may give it the code 1.
            budget_mse = self.weight_scaling_used == "budget_mse"
            largest_weight = 1 if budget_mse else self.weight_code_range[1]
            label = "weight at its smallest code" if largest_weight == 1 else "weight code"
            accum_high = signed_range(self.n_accum_bits)[1]
            for layer, (low, high) in enumerate(self._budget_input_ranges()[:2]):
                where = "the first layer's" if layer == 0 else "a hidden layer's"
                largest_input = max(-low, high)
                fits = max_fan_in((-largest_weight, largest_weight), (low, high), self.n_accum_bits)
                if fits == 0:
                    raise ValueError(
                        f"n_accum_bits={self.n_accum_bits} is too small for n_w_bits="
                        f"{self.n_w_bits} and {self._bits_text()}: a neuron's largest {label} "
                        f"({largest_weight}) times {where} largest input code "
                        f"({largest_input}) is {largest_weight * largest_input}, over "
                        f"{accum_high}, so no weight fits the L1 budget; raise n_accum_bits "
                        "or lower the bit-widths"
                    )
                # Hidden layers only: "auto" input bits may fill the first layer's budget
                # with one such product on purpose (few features, each weighted alone).
                if fits == 1 and layer > 0:
                    warnings.warn(
                        f"n_accum_bits={self.n_accum_bits} holds one weight of the largest code "
                        f"per neuron on {where} inputs at most ({largest_weight} x "
                        f"{largest_input} of {accum_high}): neurons keep one or two weights "
                        "and such networks often predict a constant (breast_cancer at "
                        "n_w_bits=3, n_a_bits=3, n_accum_bits=5, and at n_w_bits=6 with 8 "
                        "bits: 0.627, the majority class); lower the bit-widths or raise "
                        "n_accum_bits",
                        stacklevel=3,
                    )

    def _check_element_wise(self) -> None:
        """Refuse an activation that mixes neurons (Softmax, LogSoftmax, ...): the integer
        model computes each hidden neuron's activation alone, as one table lookup."""
        name = getattr(self.activation_function, "__name__", repr(self.activation_function))
        probe = torch.linspace(-4.0, 4.0, 24).reshape(6, 4).T  # 4 rows, 6 neurons
        try:
            activation = self.activation_function().eval()
            with torch.no_grad():
                whole = activation(probe)
                by_neuron = torch.cat([activation(probe[:, [j]]) for j in range(6)], dim=1)
                by_row = torch.cat([activation(probe[[i]]) for i in range(4)], dim=0)
        except Exception as error:
            raise ValueError(
                f"activation_function {name} cannot be applied to a (4, 6) tensor: {error}"
            ) from None
        if not (
            whole.shape == probe.shape
            and torch.allclose(whole, by_neuron)
            and torch.allclose(whole, by_row)
        ):
            raise ValueError(
                f"activation_function must act on each value alone (element-wise), as each "
                f"hidden neuron's table lookup does: {name} mixes the values of a layer"
            )

    def _make_linear(self, n_in: int, n_out: int) -> qnn.QuantLinear:
        if self.weight_scaling_used == "budget_mse":
            return budget_scaled_linear(n_in, n_out, self.n_w_bits, self.quant_narrow)
        return qnn.QuantLinear(
            n_in,
            n_out,
            bias=True,
            weight_quant=Int8WeightPerChannelFloat,
            weight_bit_width=self.n_w_bits,
            weight_narrow_range=self.quant_narrow,
            bias_quant=Int32Bias,
        )

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

    def _bits_text(self) -> str:
        """The activation bits, and the input bits where they differ, for messages."""
        if self.input_bit_width == self.n_a_bits:
            return f"n_a_bits={self.n_a_bits}"
        return f"n_a_bits={self.n_a_bits} and n_input_bits={self.input_bit_width}"

    @property
    def input_bit_width(self) -> int:
        """Bits of the input quantizer ``quant0``: ``n_input_bits`` resolved (``None`` gives
        ``n_a_bits``, ``"auto"`` gives ``accumulator.auto_input_bits``)."""
        if self.n_input_bits is None:
            return self.n_a_bits
        if isinstance(self.n_input_bits, str):  # "auto", the only string _validate lets in
            if self.accumulator_rule == "fan_in":  # every code counts at its extreme there
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
        return int(self.n_input_bits)

    @property
    def weight_scaling_used(self) -> str:
        """``weight_scaling`` resolved: ``"auto"`` gives ``"budget_mse"`` under
        ``"l1_budget"`` at ``n_accum_bits <= 7``
        (``weight_scaling.AUTO_BUDGET_MSE_MAX_ACCUM_BITS``), else ``"max"``."""
        if self.weight_scaling != "auto":
            return self.weight_scaling
        tight = self.n_accum_bits <= AUTO_BUDGET_MSE_MAX_ACCUM_BITS
        return "budget_mse" if tight and self.accumulator_rule == "l1_budget" else "max"

    @property
    def input_code_range(self) -> tuple[int, int]:
        """Smallest and largest code of the input quantizer ``quant0`` (the first layer's)."""
        return code_range(self.input_bit_width, signed=self.quant_signed, narrow=self.quant_narrow)

    @property
    def activation_code_range(self) -> tuple[int, int]:
        """Smallest and largest code of the later layers' input quantizers (``n_a_bits``)."""
        return code_range(self.n_a_bits, signed=self.quant_signed, narrow=self.quant_narrow)

    def linear_layers(self) -> list[qnn.QuantLinear]:
        """The ``fc{i}`` layers, first to last."""
        return [getattr(self, f"fc{i}") for i in range(self.n_layers)]

    def get_config(self) -> dict:
        """The constructor arguments, by name."""
        names = list(inspect.signature(SparseQuantNeuralNetwork.__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names}

    def layer_widths(self) -> list[int]:
        """``[input_dim, hidden widths (after structured pruning)..., n_outputs]``."""
        layers = self.linear_layers()
        return [fc.in_features for fc in layers] + [layers[-1].out_features]

    def _resize(self, widths: list[int]) -> None:
        """Replace every ``fc{i}`` whose shape differs from ``widths`` by a fresh layer."""
        for i, fc in enumerate(self.linear_layers()):
            if (fc.in_features, fc.out_features) != (widths[i], widths[i + 1]):
                setattr(self, f"fc{i}", self._make_linear(widths[i], widths[i + 1]))

    def __reduce__(self):
        # Brevitas layers do not pickle (their injector classes): rebuild from the
        # configuration, the pruned widths, the pruning state and the state_dict.
        state = {
            "widths": self.layer_widths(),
            "pruning_enabled": self.pruning_enabled,
            "neurons_pruned": self.neurons_pruned,
            "pruning_repairs": dict(self.pruning_repairs),
            "training": self.training,
            "state_dict": self.state_dict(),
        }
        return (_rebuild_network, (self.get_config(), state))

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """torch's ``load_state_dict``, after giving the network the saved one's structure.

        A state dict saved while the pruning masks were attached (keys
        ``fc{i}.parametrizations.weight.*``, as skorch's ``Checkpoint`` saves during ``fit``)
        loads into a network without them, and the reverse; the hidden widths follow the
        saved weights (a network saved after structured pruning is narrower). Loaded masks
        are the pruning decision: none is chosen again.

        Raises
        ------
        ValueError
            If ``strict`` and the state dict holds another number of linear layers, or was
            saved under the other ``weight_scaling``
            (it holds ``fc{i}.weight_largest_code`` exactly when saved under
            ``"budget_mse"``); nothing is loaded then.
        """
        saved_layers = {key.split(".")[0] for key in state_dict if key.startswith("fc")}
        if strict and saved_layers != {f"fc{i}" for i in range(self.n_layers)}:
            raise ValueError(
                f"the state dict holds the linear layers {sorted(saved_layers)} and this "
                f"network has n_layers={self.n_layers}; nothing was loaded"
            )
        saved_chosen_scales = any(key.endswith(".weight_largest_code") for key in state_dict)
        if strict and saved_chosen_scales != (self.weight_scaling_used == "budget_mse"):
            raise ValueError(
                "the state dict was saved with weight_scaling="
                f"{'budget_mse' if saved_chosen_scales else 'max'!r} and this network uses "
                f"weight_scaling={self.weight_scaling_used!r}; nothing was loaded"
            )
        masked = "fc0.parametrizations.weight.original" in state_dict
        weight_key = "fc{}.parametrizations.weight.original" if masked else "fc{}.weight"
        keys = [weight_key.format(i) for i in range(self.n_layers)]
        if all(key in state_dict for key in keys):
            shapes = [tuple(state_dict[key].shape) for key in keys]
            widths = [shapes[0][1]] + [shape[0] for shape in shapes]
            if masked != self.pruning_enabled or widths != self.layer_widths():
                for fc in self.linear_layers() if self.pruning_enabled else []:
                    parametrize.remove_parametrizations(fc, "weight", leave_parametrized=False)
                self._resize(widths)
                if masked:
                    self.neurons_pruned = True  # the saved masks are loaded below
                    self.enable_pruning()
                full = self.hidden_width
                rows = (f"fc{i}.parametrizations.weight.0.row_keep" for i in range(self.n_layers))
                self.neurons_pruned = any(width < full for width in widths[1:-1]) or any(
                    bool((state_dict[key] == 0).any()) for key in rows if key in state_dict
                )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map float inputs of shape (N, input_dim) to outputs of shape (N, n_outputs)."""
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"expected input of shape (N, {self.input_dim}) with {self.input_dim} "
                f"features, got shape {tuple(x.shape)} with {x.shape[-1]} features"
            )
        budgets = self.accumulator_rule == "l1_budget" and self.pruning_enabled
        # Each masked weight is computed once per pass: the layer and the bucket centres of
        # _read_as_table read it, and the L1-budget selection is a sort of every row.
        with parametrize.cached():
            for i in range(self.n_layers):
                x, fc = getattr(self, f"quant{i}")(x), getattr(self, f"fc{i}")
                if budgets:  # the bias counts against the budget, in input-scale units
                    fc.parametrizations.weight[0].bias_units = (fc.bias / x.scale).detach()
                shift = self._lookup_shifts[i] if i < self.n_layers - 1 else 0
                input_scale = x.scale if shift else None
                x = fc(x)
                if i < self.n_layers - 1:
                    if shift:
                        x = self._read_as_table(x, fc, input_scale, shift)
                    x = getattr(self, f"act{i}")(x)
        return x

    @contextlib.contextmanager
    def rounded_lookups(self, rounding_threshold_bits):
        """Within the block, forward passes read hidden accumulators as rounded tables do.

        Each hidden layer's output (its accumulator ``A`` times the accumulator scale) is
        replaced, before the activation, by the centre of ``A``'s bucket
        ``floor(A / 2^k)``, ``k = lsbs_to_remove(n_accum_bits, lookup_bits)``: what the
        integer model's table reads with ``to_integer_model(...,
        rounding_threshold_bits)``, whose tables drop the same ``k`` low bits however
        narrow a layer's certificate. The gradient passes straight through
        (the straight-through estimator, Bengio et al. 2013, "Estimating or Propagating
        Gradients Through Stochastic Neurons"), so training learns weights and scales
        whose outputs survive the rounding. The estimators train inside this block.

        Parameters
        ----------
        rounding_threshold_bits : None, int >= 1, or one such entry per hidden layer

        Raises
        ------
        ValueError
            If ``rounding_threshold_bits`` is invalid (``lookup_bits_per_layer``).
        """
        lookup_bits = lookup_bits_per_layer(rounding_threshold_bits, self.n_layers - 1)
        previous = self._lookup_shifts
        self._lookup_shifts = [lsbs_to_remove(self.n_accum_bits, bits) for bits in lookup_bits]
        try:
            yield self
        finally:
            self._lookup_shifts = previous

    @staticmethod
    def _read_as_table(x, fc, input_scale, shift: int) -> torch.Tensor:
        """``x`` (N, n_out) with each accumulator moved to its bucket's centre; the
        gradient is the identity."""
        with torch.no_grad():
            scale = (fc.quant_weight().scale.reshape(-1) * input_scale.reshape(-1)).detach()
            accumulator = torch.round(x / scale)
            centre = (torch.floor(accumulator / 2**shift) * 2**shift + (2**shift - 1) / 2) * scale
        return x + (centre - x).detach()

    # ------------------------------------------------------------------ pruning
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

    def _fan_in_cap(self) -> int:
        cap = self.max_active_neurons()
        if cap == 0:
            raise ValueError(
                f"n_accum_bits={self.n_accum_bits} is too small for n_w_bits={self.n_w_bits} "
                f"and {self._bits_text()}: not even one weight-input product fits; raise "
                "n_accum_bits or lower the bit-widths"
            )
        return cap

    @property
    def pruning_enabled(self) -> bool:
        """True while the fan-in masks are attached to the linear layers."""
        return parametrize.is_parametrized(self.fc0, "weight")

    def enable_pruning(self) -> None:
        """Attach the masks of ``accumulator_rule``; with ``n_prune_neurons_percentage``,
        prune neurons.

        Every neuron then keeps, re-chosen at every forward pass, at most
        ``max_active_neurons()`` non-zero weights, its largest by magnitude (``"fan_in"``),
        or its largest weights whose codes fit the accumulator (``"l1_budget"``). The first
        time, the ``n_prune_neurons_percentage`` fraction of each hidden layer's neurons
        with the smallest weight L2 norm is pruned structurally. Idempotent.
        """
        if self.pruning_enabled:
            return
        layers = self.linear_layers()
        masks = self._masks(layers)
        if not self.neurons_pruned and self.n_prune_neurons_percentage > 0:
            for fc, mask, next_mask in zip(layers[:-1], masks[:-1], masks[1:], strict=True):
                n_pruned = int(self.n_prune_neurons_percentage * fc.out_features)
                norms = fc.weight.detach().norm(dim=1)
                pruned = norms.argsort()[:n_pruned]
                mask.row_keep[pruned] = 0.0
                next_mask.col_keep[pruned] = 0.0
            self.neurons_pruned = True
        for fc, mask in zip(layers, masks, strict=True):
            parametrize.register_parametrization(fc, "weight", mask.to(fc.weight.device))

    def _masks(self, layers: list[qnn.QuantLinear]) -> list[NeuronMask]:
        """One mask of ``accumulator_rule`` per linear layer."""
        if self.accumulator_rule == "fan_in":
            cap = self._fan_in_cap()
            return [FanInMask(fc.out_features, fc.in_features, cap) for fc in layers]
        return [
            L1BudgetMask(
                fc.out_features,
                fc.in_features,
                self.weight_code_range,
                np.full(fc.in_features, low),
                np.full(fc.in_features, high),
                signed_range(self.n_accum_bits),
                layer=fc if self.weight_scaling_used == "budget_mse" else None,
            )
            for fc, (low, high) in zip(layers, self._budget_input_ranges(), strict=True)
        ]

    def _budget_input_ranges(self) -> list[tuple[int, int]]:
        """Per linear layer, the input codes the L1 budget trains for: the input
        quantizer's for the first layer; the activation quantizer's for the others, from 0
        up when the activation is never negative (the certificate then reads the real
        tables)."""
        probe = torch.linspace(-1e4, 1e4, 20_001)
        with torch.no_grad():
            non_negative = bool((self.activation_function()(probe) >= 0).all())
        low, high = self.activation_code_range
        hidden = (max(low, 0) if non_negative else low, high)
        return [self.input_code_range] + [hidden] * (self.n_layers - 1)

    def make_pruning_permanent(self) -> AccumulatorCertificate:
        """Fold the masks into the weights, drop pruned neurons, enforce the certificate.

        Pruning is enabled first if it was not. Afterwards the ``fc{i}`` layers are plain
        Brevitas layers again (their ``state_dict`` loads into a module of the same
        widths), structurally pruned hidden neurons are removed, and every neuron is
        checked against ``n_accum_bits``, layer by layer over the codes its inputs reach
        (``accumulator_certificate``). A neuron still over the bound is repaired by
        dropping its smallest weights (never needed under the fan-in cap) and clamping
        its bias; ``pruning_repairs`` counts both and a warning reports them.

        Returns
        -------
        AccumulatorCertificate
            The certificate of the pruned network; it holds.
        """
        self.enable_pruning()
        self._refresh_bias_units()
        layers = self.linear_layers()
        keep = [fc.parametrizations.weight[0].row_keep.bool() for fc in layers]
        for fc in layers:
            parametrize.remove_parametrizations(fc, "weight", leave_parametrized=True)
        for i in range(self.n_layers - 1):
            self._remove_neurons(i, keep[i])
        repairs = {"weights_dropped": 0, "biases_clamped": 0}
        certificate = self._certify([None] * (self.n_layers - 1), repairs)[0]
        self.pruning_repairs = repairs
        if any(self.pruning_repairs.values()):
            warnings.warn(
                "make_pruning_permanent repaired accumulators over "
                f"n_accum_bits={self.n_accum_bits}: {self.pruning_repairs}",
                stacklevel=2,
            )
        if not certificate.holds:  # pragma: no cover - the repair makes this unreachable
            raise RuntimeError(f"accumulator certificate violated after repair:\n{certificate}")
        return certificate

    def _refresh_bias_units(self) -> None:
        """Give each L1-budget mask the bias of the current parameters.

        The forward pass sets ``bias_units`` as it goes; parameters loaded since (skorch's
        ``load_best``, ``load_params``) would otherwise be masked with the last forward
        pass's biases."""
        if self.accumulator_rule != "l1_budget":
            return
        with self._eval_mode():
            for i, fc in enumerate(self.linear_layers()):
                scale = getattr(self, f"quant{i}").act_quant.scale()
                fc.parametrizations.weight[0].bias_units = (fc.bias / scale).detach()

    def _remove_neurons(self, layer: int, keep: torch.Tensor) -> None:
        """Remove neurons ``~keep`` of hidden layer ``layer`` and the next layer's inputs."""
        if bool(keep.all()):
            return
        fc, next_fc = getattr(self, f"fc{layer}"), getattr(self, f"fc{layer + 1}")
        new_fc = self._make_linear(fc.in_features, int(keep.sum()))
        new_next = self._make_linear(int(keep.sum()), next_fc.out_features)
        with torch.no_grad():
            new_fc.weight.copy_(fc.weight[keep])
            new_fc.bias.copy_(fc.bias[keep])
            new_next.weight.copy_(next_fc.weight[:, keep])
            new_next.bias.copy_(next_fc.bias)
            if self.weight_scaling_used == "budget_mse":
                new_fc.weight_largest_code.copy_(fc.weight_largest_code[keep])
                new_next.weight_largest_code.copy_(next_fc.weight_largest_code)
        device = fc.weight.device
        setattr(self, f"fc{layer}", new_fc.to(device))
        setattr(self, f"fc{layer + 1}", new_next.to(device))

    def _repair_layer(self, layer: int, reach: tuple, repairs: dict[str, int]) -> None:
        """Make every neuron of ``layer`` fit ``n_accum_bits`` over the input codes ``reach``.

        A neuron that does not fit loses its smallest weights while its weighted sum alone
        (before the bias, which the FHE circuit holds too) leaves the accumulator's range,
        then its bias is clamped into the range left; a neuron that fits is left alone.
        ``repairs`` counts dropped weights and clamped biases."""
        accum_low, accum_high = signed_range(self.n_accum_bits)
        fc = getattr(self, f"fc{layer}")
        while True:
            weights, bias, bias_scale = self._layer_codes(layer)
            low, high = accumulator_bounds(weights, np.zeros_like(bias), reach)
            over = np.flatnonzero((low < accum_low) | (high > accum_high))
            if over.size == 0:
                break
            with torch.no_grad():
                for row in over:
                    magnitudes = fc.weight[row].abs().masked_fill(fc.weight[row] == 0, np.inf)
                    fc.weight[row, int(magnitudes.argmin())] = 0.0
            repairs["weights_dropped"] += int(over.size)
        fitted = np.clip(bias, accum_low - low, accum_high - high)
        rows = np.flatnonzero(fitted != bias)
        if rows.size:
            with torch.no_grad():
                fc.bias[rows] = torch.as_tensor(
                    fitted[rows] * bias_scale[rows], dtype=fc.bias.dtype, device=fc.bias.device
                )
            repairs["biases_clamped"] += int(rows.size)

    # ------------------------------------------------------------------ certificate
    @contextlib.contextmanager
    def _eval_mode(self):
        """Eval mode without gradients inside the block; the training flag is restored."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def _layer_codes(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer codes of layer ``layer`` as the eval-mode forward uses them.

        Returns
        -------
        weight_codes : int64 array (n_out, n_in)
        bias_codes : int64 array (n_out,), ``round(bias / (s_w * s_x))`` saturated to 32
            bits, as Brevitas' ``Int32Bias`` quantizes it
        bias_scale : float64 array (n_out,), ``s_w * s_x``: real value of one accumulator unit
        """
        fc, quant = getattr(self, f"fc{layer}"), getattr(self, f"quant{layer}")
        with self._eval_mode():
            quant_weight = fc.quant_weight()
            scale = (quant_weight.scale * quant.act_quant.scale()).reshape(-1)
            scale = scale.expand(fc.out_features)
            bias = torch.round(fc.bias / scale)
        return (
            quant_weight.int().cpu().numpy().astype(np.int64),
            np.clip(bias.cpu().double().numpy(), *BIAS_CODE_RANGE).astype(np.int64),
            scale.cpu().numpy().astype(np.float64),
        )

    def to_integer_model(
        self, head: OutputHead, feature_names=None, rounding_threshold_bits=None
    ) -> IntegerModel:
        """The integer-only model that computes what this module computes in eval mode.

        Call after ``make_pruning_permanent``. Each hidden layer's table maps every
        certified accumulator value ``A`` of a neuron to the next input code
        ``round(act(s * A) / s_next)`` clipped to the code range, evaluated in float32 as
        the torch forward pass evaluates it.

        With ``rounding_threshold_bits`` (None, an integer >= 1, or one entry per hidden
        layer; see ``accumulator.lookup_bits_per_layer``) a table drops the low
        ``k = n_accum_bits - rounding_threshold_bits`` bits of the accumulator, as training
        does (``rounded_lookups``; fewer when the layer is certified at ``k`` bits or less):
        it reads that many high bits of an accumulator certified at ``n_accum_bits``, fewer
        of a narrower one. It is indexed by ``floor(A / 2^k)`` and each entry is the
        function above at the centre of the accumulator values of its bucket that lie in
        the neuron's certified interval. The
        model then differs from the torch module by that rounding, exactly as its FHE
        circuit does.

        Raises
        ------
        ValueError
            If pruning masks are still attached, ``rounding_threshold_bits`` is invalid, a
            table would read more than ``MAX_LOOKUP_BITS`` (16) bits of an accumulator
            (checked before any table is allocated), or the certificate does not hold
            (weights loaded from a network of another bound).
        """
        if self.pruning_enabled:
            raise ValueError("make_pruning_permanent() first: pruning masks are still attached")
        lookup_bits = lookup_bits_per_layer(rounding_threshold_bits, self.n_layers - 1)
        certificate, codes, lookups = self._certify(lookup_bits, build_tables=True)
        certificate.require(
            "the weights break the accumulator bound (from a network of another bound?), so "
            "no integer model is built"
        )
        with self._eval_mode():
            input_scale = float(self.quant0.act_quant.scale())
        return IntegerModel(
            config={
                name: self.input_bit_width if name == "n_input_bits" else getattr(self, name)
                for name in CONFIG_KEYS
            },
            input_scale=input_scale,
            weights=[weight for weight, _, _ in codes],
            biases=[bias for _, bias, _ in codes],
            scales=[scale for _, _, scale in codes],
            tables=[table for table, _, _ in lookups],
            table_offsets=[offsets for _, offsets, _ in lookups],
            head=head,
            feature_names=feature_names,
            lsbs_to_remove=[shift for _, _, shift in lookups],
        )

    def accumulator_certificate(self, rounding_threshold_bits=None) -> AccumulatorCertificate:
        """Per-layer worst-case accumulators over every reachable input code (DESIGN.md 3).

        Layer 0's inputs reach the input quantizer's codes; each later layer's inputs reach
        the smallest and largest entry of the previous layer's table over that neuron's
        certified interval (after ReLU never a negative code). The tables are those of
        ``to_integer_model(head, rounding_threshold_bits=rounding_threshold_bits)``, so this
        is that integer model's certificate without its ``lookup_bits``.

        Raises
        ------
        ValueError
            If ``rounding_threshold_bits`` is invalid (see ``to_integer_model``).
        """
        lookup_bits = lookup_bits_per_layer(rounding_threshold_bits, self.n_layers - 1)
        return self._certify(lookup_bits)[0]

    def _certify(
        self, lookup_bits: list, repairs: dict | None = None, build_tables: bool = False
    ) -> tuple:
        """Certificate, layer codes and tables, computed layer by layer.

        With ``repairs`` (a dict of counts), each layer is first repaired to fit
        ``n_accum_bits`` over the codes its inputs reach (``_repair_layer``). Without
        ``build_tables``, a table that would read more than ``MAX_LOOKUP_BITS`` bits is not
        built (it could never be): the next layer's inputs are then taken to reach every
        code, which is still a proof.

        Returns
        -------
        certificate : AccumulatorCertificate
        codes : list of ``_layer_codes`` triples, one per layer
        lookups : list of (table, offsets, shift), one per hidden layer
        """
        codes, lookups = [], []

        def layer_codes(layer, reach):
            if repairs is not None:
                self._repair_layer(layer, reach, repairs)
            codes.append(self._layer_codes(layer))
            return codes[-1][:2]

        def tabulate(layer, certified):
            read = int(certified.bits.max()) - self._lookup_shift(certified, lookup_bits[layer])
            if read > MAX_LOOKUP_BITS:
                if not build_tables:
                    return None
                raise ValueError(
                    f"fc{layer}'s table would read {read} bits of its accumulator (2^{read} "
                    f"entries per neuron); tables read at most {MAX_LOOKUP_BITS} bits: "
                    f"set rounding_threshold_bits to at most {MAX_LOOKUP_BITS}"
                )
            lookups.append(self._table(layer, certified, codes[layer][2], lookup_bits[layer]))
            return lookups[-1]

        with self._eval_mode():
            certificate = certify_network(
                self.n_layers,
                layer_codes,
                self.input_code_range,
                self.n_accum_bits,
                tabulate,
                self.activation_code_range,
            )
        return certificate, codes, lookups

    def _lookup_shift(self, layer_certificate: LayerCertificate, lookup_bits) -> int:
        """Low bits a hidden layer's table drops: those training drops (``rounded_lookups``),
        ``lsbs_to_remove(n_accum_bits, lookup_bits)``, whatever the layer's certified width,
        so the table reads the buckets the network learned around. A layer certified at
        ``bits`` bits, narrower than the bound, therefore reads ``bits - shift`` bits,
        fewer than ``lookup_bits`` (finer buckets than training's read the accumulator
        differently: on a breast_cancer fold at 3/3/12 with the fan-in rule, layers
        certified at 9-10 bits read at 5 bits scored 0.667, at training's shift 0.930).
        The shift stays below ``bits``: any larger one splits the interval at 0 alone, as
        this one does."""
        bits = int(layer_certificate.bits.max())
        return min(lsbs_to_remove(self.n_accum_bits, lookup_bits), max(bits - 1, 0))

    def _table(
        self, layer: int, layer_certificate: LayerCertificate, scale: np.ndarray, lookup_bits
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The lookup after hidden layer ``layer``: table, offsets, shift (call in eval mode).

        ``shift = _lookup_shift(...)``; row ``j`` holds, for each bucket
        ``floor(A / 2^shift)`` of the neuron's certified interval, the next input code of
        the centre of the bucket's accumulator values inside the interval (see
        ``to_integer_model``), in float32 as the torch forward evaluates it.
        """
        lo, hi = layer_certificate.lo[:, None], layer_certificate.hi[:, None]
        shift = self._lookup_shift(layer_certificate, lookup_bits)
        first = lo >> shift
        width = int(((hi >> shift) - first).max()) + 1
        next_scale = getattr(self, f"quant{layer + 1}").act_quant.scale().cpu()
        rows = max(1, _TABLE_CHUNK_ENTRIES // width)  # bounds the temporaries
        chunks = []
        for part in (slice(start, start + rows) for start in range(0, len(first), rows)):
            buckets = first[part] + np.arange(width)[None, :]
            # The centre of each bucket's accumulator values inside [lo, hi].
            bucket_low = np.maximum(buckets << shift, lo[part])
            bucket_high = np.minimum(((buckets + 1) << shift) - 1, hi[part])
            values = (bucket_low + np.maximum(bucket_high, bucket_low)) / 2.0
            real = torch.as_tensor(values * scale[part, None], dtype=torch.float32)
            activated = getattr(self, f"act{layer}")(real)
            next_codes = torch.round(activated / next_scale).double().numpy()
            chunks.append(np.clip(next_codes, *self.activation_code_range).astype(np.int64))
        return np.concatenate(chunks), first[:, 0].astype(np.int64), shift


def _rebuild_network(config: dict, state: dict) -> SparseQuantNeuralNetwork:
    """Inverse of ``SparseQuantNeuralNetwork.__reduce__``."""
    net = SparseQuantNeuralNetwork(**config)
    net._resize(state["widths"])
    if state["pruning_enabled"]:
        net.neurons_pruned = True  # the saved masks are loaded below, none is chosen now
        net.enable_pruning()
    net.neurons_pruned = state["neurons_pruned"]
    net.pruning_repairs = state["pruning_repairs"]
    net.load_state_dict(state["state_dict"])
    tensors = list(state["state_dict"].values())
    if tensors:  # Brevitas creates some parameters while loading: move after loading
        net.to(tensors[0].device)
    net.train(state["training"])
    return net


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
