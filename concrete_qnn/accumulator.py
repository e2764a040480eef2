"""Integer code ranges, worst-case accumulator intervals and bit-widths.

Pure functions on integers (numpy ``int64``): no torch, no Brevitas. They define the
accumulator guarantee (every neuron's worst case over every reachable input code fits
``n_accum_bits``) and are shared by the torch module, the certificate and the tests.
"""

from __future__ import annotations

import numbers

import numpy as np


def code_range(n_bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """Smallest and largest integer code of a symmetric ``n_bits`` quantizer.

    Signed: ``[-2^(b-1), 2^(b-1)-1]`` (narrow drops the lowest code);
    unsigned: ``[0, 2^b-1]`` (narrow drops the highest code). Same as Brevitas'
    ``min_int`` / ``max_int``.
    """
    if n_bits < 1:
        raise ValueError(f"a quantizer needs at least 1 bit, got {n_bits}")
    if signed:
        low, high = -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1
        return (low + 1 if narrow else low), high
    return 0, (2**n_bits - 2 if narrow else 2**n_bits - 1)


def signed_range(n_bits: int) -> tuple[int, int]:
    """Values a signed ``n_bits`` accumulator holds: ``[-2^(n-1), 2^(n-1)-1]``."""
    return code_range(n_bits, signed=True, narrow=False)


def product_range(weight_range: tuple[int, int], input_range: tuple[int, int]) -> tuple[int, int]:
    """Smallest and largest product of one weight code and one input code."""
    corners = [w * x for w in weight_range for x in input_range]
    return min(corners), max(corners)


def max_fan_in(
    weight_range: tuple[int, int], input_range: tuple[int, int], n_accum_bits: int
) -> int:
    """Largest ``k`` such that any ``k`` weight codes times any ``k`` input codes fit.

    Every one of the ``k`` products lies in ``product_range``; the sum of ``k`` of them
    lies in ``[k * pmin, k * pmax]``, which must sit inside the signed ``n_accum_bits``
    range. Returns 0 when not even one product fits.

    Raises
    ------
    ValueError
        If every product is 0 (a quantizer with the single code 0): no fan-in bounds it.
    """
    accum_low, accum_high = signed_range(n_accum_bits)
    product_low, product_high = product_range(weight_range, input_range)
    if product_low == 0 and product_high == 0:
        raise ValueError("every weight-input product is 0: the quantizers have no usable code")
    limits = []
    if product_high > 0:
        limits.append(accum_high // product_high)
    if product_low < 0:
        limits.append(accum_low // product_low)
    return min(limits)


# Finest input codes "auto" gives: Brevitas' Int8 input quantizers' width.
MAX_AUTO_INPUT_BITS = 8
# Coarsest: a signed 1-bit quantizer has the codes -1 and 0 alone.
MIN_AUTO_INPUT_BITS = 2
# Weights of code +1 that "auto" leaves room for in each neuron when the weight scale
# follows the budget (weight_scaling="budget_mse"): four, measured at 3/3/5 and 3/3/6
# (benchmarks/RESULTS.md; the docs' guide, "Choosing rules and bit-widths").
AUTO_UNIT_CODES_PER_NEURON = 4


def auto_input_bits(
    n_features: int,
    weight_range: tuple[int, int],
    n_a_bits: int,
    n_accum_bits: int,
    signed: bool,
    narrow: bool,
    weight_scaling: str = "max",
) -> int:
    """Input bit-width of ``n_input_bits="auto"``: the codes the accumulator budget suits.

    With ``weight_scaling="budget_mse"``, where each neuron's largest weight may take any
    code down to 1: the finest ``b`` in ``[MIN_AUTO_INPUT_BITS, MAX_AUTO_INPUT_BITS]`` at
    which ``AUTO_UNIT_CODES_PER_NEURON`` (4) weights of code +1 fit at any input codes
    (``max_fan_in((0, 1), codes_b, n_accum_bits) >= 4``: ``n_accum_bits - 2`` for signed
    inputs, 3 bits at 5, 4 at 6, 8 from 10 on). The scale then gives each neuron the few
    inputs it uses at fine codes; at 3/3/6 it scored breast_cancer 0.9754, wine 0.9776,
    synthetic 0.8835, diabetes R^2 0.4676 where the 2-bit inputs of the rule below scored
    0.9473, 0.9662, 0.8465, 0.4044 (5-fold means, benchmark protocol; 3 bits at 6 and 4
    bits at 5 scored lower on most). The rest of this docstring is the rule of Brevitas'
    max-abs scale (``"max"``), whose largest weight always takes the extreme code.

    Finer: the largest ``b`` in ``[n_a_bits, MAX_AUTO_INPUT_BITS]`` at which, inside the
    signed ``n_accum_bits`` range, each of the ``n_features`` inputs can still hold a weight
    code of magnitude 1 at its extreme input code (``n_features * max|code_b| <=
    2^(n_accum_bits-1) - 1``) and one input the extreme weight code (``max_fan_in >= 1``:
    the L1 budget always keeps a neuron's largest weight). Few features leave the first
    layer's accumulator room that 3-bit inputs (8 levels a feature) do not use; finer codes
    then draw curved boundaries the coarse ones cannot (measured in
    ``benchmarks/SUITES.md``).

    Coarser: where at ``n_a_bits`` the extreme weight code fits on one input at most
    (``max_fan_in <= 1``: 3/3 bits in a 6-bit accumulator or narrower), a neuron's
    largest weight alone fills its budget; the input bits step down, never under
    ``MIN_AUTO_INPUT_BITS`` (2), until two or more such products fit (3/3/6: 2-bit inputs
    hold 3). On the five benchmark datasets at 3/3/6, 2-bit inputs beat 3-bit inputs on
    every one (the docs' guide, "Choosing rules and bit-widths"; ``benchmarks/RESULTS.md``
    has the 2-bit figures). The certificate covers whatever bits are chosen.
    """
    if weight_scaling == "budget_mse":
        room = [
            bits
            for bits in range(MIN_AUTO_INPUT_BITS, MAX_AUTO_INPUT_BITS + 1)
            if max_fan_in((0, 1), code_range(bits, signed, narrow), n_accum_bits)
            >= AUTO_UNIT_CODES_PER_NEURON
        ]
        return max(room, default=MIN_AUTO_INPUT_BITS)
    accum_high = signed_range(n_accum_bits)[1]

    def fan_in(bits: int) -> int:
        return max_fan_in(weight_range, code_range(bits, signed, narrow), n_accum_bits)

    bits = n_a_bits
    if fan_in(bits) <= 1:
        while bits > MIN_AUTO_INPUT_BITS and fan_in(bits) <= 1:
            bits -= 1
        return bits
    while bits < MAX_AUTO_INPUT_BITS:
        codes = code_range(bits + 1, signed, narrow)
        if n_features * max(-codes[0], codes[1]) > accum_high:
            break
        if fan_in(bits + 1) < 1:
            break
        bits += 1
    return bits


def accumulator_bounds(
    weight_codes: np.ndarray, bias_codes: np.ndarray, input_range: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Worst-case accumulator interval of every neuron over all reachable input codes.

    Parameters
    ----------
    weight_codes : int array, shape (n_out, n_in)
    bias_codes : int array, shape (n_out,), bias in accumulator units
    input_range : (xmin, xmax)
        The codes each input can take: two ints (every input alike, the input quantizer's
        codes) or two int arrays of shape (n_in,), one range per input (``certificate``
        section 3, reachable input codes).

    Returns
    -------
    lo, hi : int64 arrays, shape (n_out,)
        ``lo_j = B_j + sum_i min(W_ji*xmin_i, W_ji*xmax_i)``, ``hi_j`` likewise with max.
        Both ends are reached: by the input vector that puts each input at the end of its
        range that minimizes (maximizes) its product.
    """
    weights = np.asarray(weight_codes, dtype=np.int64)
    xmin, xmax = (np.asarray(end, dtype=np.int64) for end in input_range)
    at_min, at_max = weights * xmin, weights * xmax
    bias = np.asarray(bias_codes, dtype=np.int64)
    low = bias + np.minimum(at_min, at_max).sum(axis=1)
    high = bias + np.maximum(at_min, at_max).sum(axis=1)
    return low, high


def table_output_range(
    table: np.ndarray, offsets: np.ndarray, low: np.ndarray, high: np.ndarray, shift: int
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest code each neuron's table gives over its certified interval.

    The codes the next layer's inputs can reach (the certificate's reachable codes): row
    ``j`` is read at ``(A >> shift) - offsets[j]`` for every accumulator ``A`` in
    ``[low[j], high[j]]``, that is at every index from ``(low[j] >> shift) - offsets[j]`` to
    ``(high[j] >> shift) - offsets[j]``; those entries, and only those, are reachable.

    Parameters
    ----------
    table : int64 array (n_out, width)
    offsets : int64 array (n_out,), ``A >> shift`` of each row's first entry
    low, high : int64 arrays (n_out,), the certified interval
    shift : int, low accumulator bits dropped before the lookup

    Returns
    -------
    codes_low, codes_high : int64 arrays (n_out,)

    Raises
    ------
    ValueError
        If a row does not cover its neuron's certified interval.
    """
    table = np.asarray(table, dtype=np.int64)
    first = (np.asarray(low, dtype=np.int64) >> shift) - offsets
    last = (np.asarray(high, dtype=np.int64) >> shift) - offsets
    if np.any(first < 0) or np.any(last >= table.shape[1]) or np.any(first > last):
        raise ValueError("the table does not cover every certified accumulator value")
    columns = np.arange(table.shape[1])[None, :]
    reachable = (columns >= first[:, None]) & (columns <= last[:, None])
    info = np.iinfo(np.int64)
    codes_low = np.where(reachable, table, info.max).min(axis=1)
    codes_high = np.where(reachable, table, info.min).max(axis=1)
    return codes_low, codes_high


def bits_needed(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Smallest signed bit-width ``n`` with ``-2^(n-1) <= low`` and ``high <= 2^(n-1)-1``.

    Element-wise on int arrays; an interval ``[0, 0]`` needs 1 bit.
    """
    low = np.asarray(low, dtype=np.int64)
    high = np.asarray(high, dtype=np.int64)
    # -2^(n-1) <= low  <=>  n - 1 >= bit_length(-low - 1) for low < 0
    # high <= 2^(n-1) - 1  <=>  n - 1 >= bit_length(high) for high >= 0
    need_low = np.where(low < 0, _bit_length(-low - 1), 0)
    need_high = np.where(high > 0, _bit_length(high), 0)
    return np.maximum(need_low, need_high) + 1


def _bit_length(values: np.ndarray) -> np.ndarray:
    """``int.bit_length`` element-wise for non-negative int64 values."""
    return np.array([int(v).bit_length() for v in np.ravel(values)], dtype=np.int64).reshape(
        np.shape(values)
    )


def lookup_bits_per_layer(rounding_threshold_bits, n_hidden_layers: int) -> list[int | None]:
    """Validate ``rounding_threshold_bits``: the bits each hidden layer's table lookup reads.

    ``None`` reads the whole accumulator; an integer ``n >= 1`` applies to every hidden
    layer; a list or tuple gives one entry (``None`` or ``n >= 1``) per hidden layer.
    (Concrete ML calls this ``rounding_threshold_bits``.)

    Raises
    ------
    ValueError
        If an entry is not ``None`` or an integer >= 1, or a sequence has the wrong length.
    """
    if isinstance(rounding_threshold_bits, (list, tuple)):
        entries = list(rounding_threshold_bits)
        if len(entries) != n_hidden_layers:
            raise ValueError(
                f"rounding_threshold_bits needs one entry per hidden layer ({n_hidden_layers}), "
                f"got {len(entries)}: {rounding_threshold_bits!r}"
            )
    else:
        entries = [rounding_threshold_bits] * n_hidden_layers
    for entry in entries:
        if entry is not None and (
            isinstance(entry, bool) or not isinstance(entry, numbers.Integral) or entry < 1
        ):
            raise ValueError(
                "rounding_threshold_bits must be None, an integer >= 1 or one such entry per "
                f"hidden layer, got {rounding_threshold_bits!r}"
            )
    return [None if entry is None else int(entry) for entry in entries]


def lsbs_to_remove(accumulator_bits: int, lookup_bits: int | None) -> int:
    """Low bits dropped before a table lookup that reads ``lookup_bits`` of the accumulator.

    ``floor(A / 2^k)`` with ``k = max(0, accumulator_bits - lookup_bits)``: concrete-python's
    ``truncate_bit_pattern(A, k)``; ``k = 0`` when ``lookup_bits`` is None.
    """
    if lookup_bits is None:
        return 0
    return max(0, int(accumulator_bits) - int(lookup_bits))
