"""The network: Brevitas layers, the forward pass, and the rounded lookups of training.

``SparseQuantNeuralNetwork`` composes Brevitas layers (``nn.quantizers``) from a validated
configuration (``concrete_qnn.config``); its accumulator rule (``nn.rules``) masks the weights
while pruning is enabled (``concrete_qnn.pruning``), and the pruned network converts to the
integer model (``concrete_qnn.convert``). Pickling and loading of its state: ``nn.state``.
The class runs past 250 lines: about 110 of them document its parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from concrete_qnn import convert, pruning
from concrete_qnn.accumulator import lookup_bits_per_layer, lsbs_to_remove
from concrete_qnn.certificate import AccumulatorCertificate
from concrete_qnn.config import MAX_BITWIDTH_BACKWARD_COMPATIBLE, NetworkConfig
from concrete_qnn.nn import lookups, state
from concrete_qnn.nn.quantizers import (
    accumulator_scale,
    activation_quantizer,
    quant_linear,
    read_as_table,
)

# What the network reads from its configuration as attributes of its own.
_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(NetworkConfig))
_CONFIG_ATTRIBUTES = _CONFIG_FIELDS | {
    "hidden_width",
    "weight_code_range",
    "weight_scaling_used",
    "learned_lookups_used",
    "input_bit_width",
    "input_code_range",
    "activation_code_range",
}
# Fields that may change after construction: read only when pruning is enabled.
_SETTABLE_FIELDS = frozenset({"n_prune_neurons_percentage"})


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
    accumulator_rule : str, a name of ``nn.rules.ACCUMULATOR_RULES``: "fan_in", "l1_budget", "a2q"
        How training keeps each neuron within ``n_accum_bits``. ``"fan_in"``: at most
        ``max_active_neurons()`` non-zero weights per neuron (``FanInMask``), every weight and
        input at its extreme. ``"l1_budget"``: the largest weights whose codes, weighted by
        the codes each input reaches (hidden inputs after a non-negative activation such as
        ReLU are never negative), fit with the bias (``L1BudgetMask``; A2Q's per-neuron L1
        bound, Colbert et al. 2023), so many small weights fit where few large ones do.
        ``"a2q"`` (experimental): every weight kept, each neuron's scale chosen so that its
        codes, rounded toward zero then to nearest where they still fit, fill that budget
        (``L1BallMask``; A2Q, with A2Q+'s zero-centring on non-negative inputs); it chooses
        the scales whatever ``weight_scaling`` says.
        Whatever the rule, ``make_pruning_permanent`` certifies the result exactly.
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
        squared weight error, re-chosen at every step (``nn.quantizers``):
        coarser codes and more inputs per neuron where the bound is tight. The layers then
        hold ``weight_largest_code`` (float (n_out,)). ``"auto"`` (the estimators'
        default): ``"budget_mse"`` under ``"l1_budget"`` at ``n_accum_bits <= 7``, where it
        wins the benchmark, else ``"max"``; ``weight_scaling_used`` holds the choice.
    learned_lookups : bool or "auto"
        Each hidden neuron learns its table's function, from ``activation_function`` on, at
        no FHE cost (``nn.lookups.LearnedLookup``). ``"auto"`` (the estimators' default)
        learns them for at most 8 features; ``learned_lookups_used`` holds the choice.

    Attributes
    ----------
    config : NetworkConfig
        The validated parameters (``concrete_qnn.config``). Its fields and derived values
        (``hidden_width``, ``weight_code_range``, ``input_bit_width``, ``input_code_range``,
        ``activation_code_range``, ``weight_scaling_used``, ``learned_lookups_used``) read
        as attributes of the network; only ``n_prune_neurons_percentage`` may be set.
    neurons_pruned : bool
        Whether structured pruning has removed (or masked) hidden neurons.
    pruning_repairs : dict
        ``{"weights_dropped": int, "biases_clamped": int}`` of the last
        ``make_pruning_permanent``.

    Raises
    ------
    InvalidParameterError
        A ``ValueError``: if a parameter is outside its allowed range, a quantizer has no
        usable code, or not even one weight fits the accumulator (``"fan_in"``:
        ``max_active_neurons() == 0``; ``"l1_budget"``: a weight code of 1 times the largest
        input code does not fit).
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
        learned_lookups=False,
    ):
        super().__init__()
        arguments = {name: value for name, value in locals().items() if name in _CONFIG_FIELDS}
        self.config = NetworkConfig(**arguments)
        config = self.config
        hidden = config.hidden_width
        widths = [config.input_dim] + [hidden] * (config.n_layers - 1) + [config.n_outputs]
        for i in range(config.n_layers):
            bits = config.input_bit_width if i == 0 else config.n_a_bits
            quant = activation_quantizer(bits, config.quant_signed, config.quant_narrow)
            setattr(self, f"quant{i}", quant)
            setattr(self, f"fc{i}", self.make_linear(widths[i], widths[i + 1]))
            if i < config.n_layers - 1:
                setattr(self, f"act{i}", lookups.make_activation(config, widths[i + 1]))
        self.neurons_pruned = False
        self.pruning_repairs = {"weights_dropped": 0, "biases_clamped": 0}
        self._lookup_shifts = [0] * (config.n_layers - 1)  # set by rounded_lookups

    def __getattr__(self, name):
        config = self.__dict__.get("config")
        if config is not None and name in _CONFIG_ATTRIBUTES:
            return getattr(config, name)
        return super().__getattr__(name)

    def __setattr__(self, name, value):
        if name in _CONFIG_FIELDS and "config" in self.__dict__:
            if name not in _SETTABLE_FIELDS:
                raise AttributeError(
                    f"{name} is fixed when the network is built: build a new network"
                )
            self.config = self.config.replace(**{name: value})
            return
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ structure
    def make_linear(self, n_in: int, n_out: int):
        """A fresh linear layer of this network's weight quantizer (``quant_linear``)."""
        config = self.config
        return quant_linear(
            n_in, n_out, config.n_w_bits, config.quant_narrow, config.weight_scaling_used
        )

    def linear_layers(self) -> list:
        """The ``fc{i}`` layers (Brevitas ``QuantLinear``), first to last."""
        return [getattr(self, f"fc{i}") for i in range(self.n_layers)]

    def get_config(self) -> dict:
        """The constructor arguments, by name."""
        return self.config.as_dict()

    def layer_widths(self) -> list[int]:
        """``[input_dim, hidden widths (after structured pruning)..., n_outputs]``."""
        layers = self.linear_layers()
        return [fc.in_features for fc in layers] + [layers[-1].out_features]

    def __reduce__(self):
        # Brevitas layers do not pickle (injector classes): rebuilt by nn.state.reduce
        return state.reduce(self)

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
            saved under the other ``weight_scaling`` (it holds ``fc{i}.weight_largest_code``
            exactly when saved under ``"budget_mse"``); nothing is loaded then.
        """
        state.adopt_structure(self, state_dict, strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map float inputs of shape (N, input_dim) to outputs of shape (N, n_outputs)."""
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"expected input of shape (N, {self.input_dim}) with {self.input_dim} "
                f"features, got shape {tuple(x.shape)} with {x.shape[-1]} features"
            )
        budgets = self.config.rule.counts_bias and self.pruning_enabled
        # Each masked weight is computed once per pass: the layer and the bucket centres of
        # read_as_table read it, and the L1-budget selection is a sort of every row.
        with parametrize.cached():
            for i in range(self.n_layers):
                x, fc = getattr(self, f"quant{i}")(x), getattr(self, f"fc{i}")
                if budgets:  # the bias counts against the budget, in input-scale units
                    fc.parametrizations.weight[0].bias_units = (fc.bias / x.scale).detach()
                hidden = i < self.n_layers - 1
                shift = self._lookup_shifts[i] if hidden else 0
                # Only rounded or learned lookups read scales (ONNX export's tensors have none)
                input_scale = x.scale if shift or (hidden and self.learned_lookups_used) else None
                x = fc(x)
                if hidden:
                    scale = None if input_scale is None else accumulator_scale(fc, input_scale)
                    if shift:
                        x = read_as_table(x, scale, shift)
                    x = lookups.activate(self, i, x, scale)
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

    # ------------------------------------------------------------------ pruning
    def max_active_neurons(self) -> int:
        """Largest fan-in ``k`` at which any weights and inputs fit ``n_accum_bits``
        (``NetworkConfig.max_active_neurons``: signed 3/3/8 gives 7)."""
        return self.config.max_active_neurons()

    @property
    def pruning_enabled(self) -> bool:
        """True while the masks of the accumulator rule are attached to the linear layers."""
        return parametrize.is_parametrized(self.fc0, "weight")

    def enable_pruning(self) -> None:
        """Attach the masks of ``accumulator_rule``; with ``n_prune_neurons_percentage``,
        prune neurons (``pruning.enable_pruning``). Idempotent."""
        pruning.enable_pruning(self)

    def make_pruning_permanent(self) -> AccumulatorCertificate:
        """Fold the masks into the weights, drop pruned neurons, enforce the certificate
        (``pruning.make_pruning_permanent``); returns the certificate, which holds."""
        return pruning.make_pruning_permanent(self)

    # ------------------------------------------------------------------ integer model
    def to_integer_model(self, head, feature_names=None, rounding_threshold_bits=None):
        """The integer-only model that computes what this module computes in eval mode
        (``convert.to_integer_model``, which documents the tables and the errors)."""
        return convert.to_integer_model(self, head, feature_names, rounding_threshold_bits)

    def accumulator_certificate(self, rounding_threshold_bits=None) -> AccumulatorCertificate:
        """Per-layer worst-case accumulators over every reachable input code
        (``convert.accumulator_certificate``)."""
        return convert.accumulator_certificate(self, rounding_threshold_bits)

    @contextlib.contextmanager
    def eval_mode(self):
        """Eval mode without gradients inside the block; the training flag is restored."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)
