"""Per-neuron weight selections: the masks that keep each neuron inside its accumulator.

A mask is a torch parametrization of a linear layer's weight (``torch.nn.utils.parametrize``):
structured masks first (pruned neurons and their inputs are hard zeros), then a per-neuron
selection re-chosen at every forward pass with a straight-through gradient (Bengio et al.
2013), so that a dropped weight keeps learning and comes back when it outgrows a kept one.
The accumulator rules (``nn.rules``) build them.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import nn

# Weight codes computed at once by weight_scaling="budget_mse" (candidate largest codes
# times selected weights): bounds its temporaries, so 8-bit weights (128 candidates) do
# not hold 128 copies of a wide layer.
_CODE_CHUNK_ENTRIES = 2**18


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

    A neuron's accumulator stays in ``[accum_low, accum_high]`` for every reachable input when
    ``B + sum_i max(c_i * xmin_i, c_i * xmax_i) <= accum_high`` and likewise below (the
    certificate's interval, ``accumulator.accumulator_bounds``): a budget on the weight codes
    ``c_i`` weighted by each input's reachable codes, a per-neuron L1 norm bound as in A2Q
    (Colbert et al. 2023, "A2Q: Accumulator-Aware Quantization with Guaranteed Overflow
    Avoidance"). Here it is met by selection rather than by A2Q's weight normalization: the
    weights are taken largest first (by magnitude), as long as the running interval fits, with
    the bias and without it (the FHE circuit holds the sum before the bias too), so many small
    codes fit where few large ones would. The largest weight is always kept (it sets the scale).
    Each non-zero code widens the interval by at least the narrowest input range, so a fitting
    selection holds at most ``max_nonzero_codes`` of them: only that many weights plus one, the
    largest (``topk``), are ranked, not the whole row (a full sort took 1.2 ms of 1.7 ms on a
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
        The masked layer, built by ``nn.quantizers.budget_scaled_linear``, for
        ``weight_scaling="budget_mse"``: each row's scale is then chosen too (its largest
        weight's code ``m``, written to ``layer.weight_largest_code``; see
        ``concrete_qnn.nn.quantizers``). None keeps Brevitas' max-abs scale.

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


class L1BallMask(NeuronMask):
    """The A2Q rule: every weight kept, each neuron's scale set so its codes fill its budget.

    A2Q (Colbert et al. 2023, "A2Q: Accumulator-Aware Quantization with Guaranteed Overflow
    Avoidance") bounds each neuron's weight codes by a per-neuron L1 norm and rounds toward
    zero, so that no rounding can leave the bound; weights are learned inside that L1 ball
    rather than pruned to fit it. Here the ball is the certificate's exact interval
    (``accumulator.accumulator_bounds``): with ``P(w) = sum_i max(w_i * xmin_i, w_i * xmax_i)``
    and ``N(w) = -sum_i min(...)``, a row's codes ``c = trunc(w / s)`` keep ``P(c) <= P(w) / s``
    and ``N(c) <= N(w) / s``, so the smallest scale at which ``(P(w) + max(B, 0)) / s`` fits
    ``accum_high`` and ``(N(w) + max(-B, 0)) / s`` fits ``-accum_low`` (``B``, the bias,
    ``bias_units``; the sum before the bias fits too) gives codes that fit, the rounding of
    the bias included (an integer accumulator over ``accum_high`` by at most 0.5 is not).
    The budget that rounding toward zero leaves is then spent rounding to nearest: the codes
    whose remainder is over 1/2, largest first, go one code further out while the row's
    exact interval still fits.
    The scale is no finer than Brevitas' max-abs scale (the largest weight at the extreme
    code) and no coarser than the largest weight itself (its code stays at least 1, as
    ``L1BudgetMask`` keeps it: ``make_pruning_permanent`` repairs a row where even that does
    not fit). The weights themselves are left as learned: the scale follows them (A2Q
    learns a norm ``g`` clamped to the budget times the scale; here ``g`` is the weights'
    own norm, so they never leave the ball and need no projection when training starts).

    ``zero_center`` (A2Q+, Colbert et al. 2024, "A2Q+: Improving Accumulator-Aware Weight
    Quantization"), for inputs that are never negative: each row's kept weights are
    centred on 0 before they are quantized, so that ``P`` and ``N`` (positive and negative
    codes apart) are equal and each uses its half of the accumulator, twice the L1 norm of
    codes that a row of one sign could hold.

    The codes leave the mask as ``c * s``, with the layer's ``weight_largest_code``
    (``nn.quantizers.budget_scaled_linear``) set to each row's largest ``|c|``, so Brevitas'
    quantizer finds the same scale and codes; the gradient passes straight through.

    Parameters
    ----------
    n_out, n_in : int
    weight_range : (int, int), the weight codes ``(wmin, wmax)``
    input_low, input_high : float arrays (n_in,), the codes each input reaches in training;
        each range holds 0
    accum_range : (int, int), the signed ``n_accum_bits`` range
    layer : brevitas.nn.QuantLinear built by ``budget_scaled_linear``
    zero_center : bool

    Raises
    ------
    ValueError
        If an input's range does not hold 0.
    """

    # The scale is widened by this much, so that no float rounding of w / s crosses a code.
    _MARGIN = 1e-6

    def __init__(
        self, n_out, n_in, weight_range, input_low, input_high, accum_range, layer, zero_center
    ):
        super().__init__(n_out, n_in)
        if np.any(np.asarray(input_low) > 0) or np.any(np.asarray(input_high) < 0):
            raise ValueError("L1BallMask needs input code ranges that hold 0")
        self.weight_low, self.weight_high = (float(end) for end in weight_range)
        self.accum_low, self.accum_high = (float(end) for end in accum_range)
        self.zero_center = bool(zero_center)
        self.register_buffer("input_low", torch.as_tensor(input_low).float(), persistent=False)
        self.register_buffer("input_high", torch.as_tensor(input_high).float(), persistent=False)
        self.bias_units = None
        self._layer = weakref.ref(layer)  # a weak reference: the layer holds this mask

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        weight = weight * self.row_keep[:, None] * self.col_keep[None, :]
        if self.zero_center:  # A2Q+: the mean of each row's kept weights (pruned inputs: 0)
            mean = weight.sum(1, keepdim=True) / self.col_keep.sum().clamp_min(1.0)
            weight = (weight - mean) * self.row_keep[:, None] * self.col_keep[None, :]
        codes, scale = self.codes(weight.detach())
        self._layer().weight_largest_code.copy_(codes.abs().amax(1).clamp_min(1.0))
        return weight + (codes * scale - weight).detach()

    def codes(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's codes, float (n_out, n_in), and its scale, float (n_out, 1)."""
        positive, negative = weight.clamp(min=0), (-weight).clamp(min=0)
        low, high = self.input_low.to(weight), self.input_high.to(weight)
        top = positive @ high - negative @ low  # P(w): the weighted sum's largest value
        bottom = -(positive @ low) + negative @ high  # N(w): minus its smallest
        if self.bias_units is not None:
            bias = self.bias_units.to(weight)
            top, bottom = top + bias.clamp(min=0), bottom + (-bias).clamp(min=0)
        absmax = weight.abs().amax(1)
        largest = max(-self.weight_low, self.weight_high)
        scale = torch.maximum(top / self.accum_high, bottom / -self.accum_low)
        scale = torch.maximum(scale * (1 + self._MARGIN), absmax / largest)
        scale = torch.minimum(scale, absmax).clamp_min(1e-30)[:, None]
        ratio = weight / scale
        codes = torch.trunc(ratio).clamp(self.weight_low, self.weight_high)
        return self._round_up(ratio, codes, scale, low, high), scale

    def _round_up(self, ratio, codes, scale, low, high):
        """Round away from zero the codes whose remainder is over 1/2 (largest first) while
        the row's exact interval, bias included, still fits: round-to-nearest wherever the
        budget left by rounding toward zero allows it."""
        remainder = (ratio - codes).abs()
        up = ratio > 0
        inside = torch.where(up, codes < self.weight_high, codes > self.weight_low)
        remainder = torch.where(inside & (ratio != 0), remainder, 0.0)
        cost_top = torch.where(up, high, -low).expand_as(codes)  # one code further out
        cost_bottom = torch.where(up, -low, high).expand_as(codes)
        positive, negative = codes.clamp(min=0), (-codes).clamp(min=0)
        room_top = self.accum_high - (positive @ high - negative @ low)
        room_bottom = -self.accum_low - (negative @ high - positive @ low)
        if self.bias_units is not None:  # Int32Bias rounds to nearest: its largest code
            bias = self.bias_units.to(ratio) / scale[:, 0]
            room_top = room_top - torch.floor(bias + 0.5 + 1e-6).clamp(min=0)
            room_bottom = room_bottom - torch.floor(-bias + 0.5 + 1e-6).clamp(min=0)
        remainder, order = remainder.sort(1, descending=True)
        fits = (cost_top.gather(1, order).cumsum(1) <= room_top[:, None]) & (
            cost_bottom.gather(1, order).cumsum(1) <= room_bottom[:, None]
        )
        step = (fits & (remainder > 0.5)).to(codes)  # a prefix: the costs are not negative
        return codes + torch.zeros_like(codes).scatter_(1, order, step) * torch.sign(ratio)
