"""Large data: batched loading, predictions that stream, integer-model tables of bounded size."""

import tracemalloc

import numpy as np
import pytest
import torch

from concrete_qnn import QNNClassifier, SparseQuantNeuralNetwork
from concrete_qnn.integer import BATCH_ROWS, MAX_LOOKUP_BITS, OutputHead

FAST = {"max_epochs": 3, "random_state": 0}


def _prediction_peak(model, n_rows: int) -> int:
    X = np.random.default_rng(0).standard_normal((n_rows, model.n_features_in_))
    X = X.astype(np.float32)
    tracemalloc.start()
    model.predict_proba(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_predict_streams_its_memory_grows_only_with_the_output():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 16)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = QNNClassifier(max_epochs=1, random_state=0).fit(X, y)
    hidden = model.module_.layer_widths()[1]
    assert hidden == 64
    small, large = 2 * BATCH_ROWS, 8 * BATCH_ROWS
    growth_per_row = (_prediction_peak(model, large) - _prediction_peak(model, small)) / (
        large - small
    )
    # per row: int64 accumulators, float64 outputs and probabilities of 2 classes (48 bytes);
    # one (n_samples x hidden) float64 copy alone would be 512 bytes
    assert growth_per_row <= 64
    assert growth_per_row < 8 * hidden / 4


def test_tables_wider_than_sixteen_bits_are_refused_before_training(iris):
    X, y = iris
    model = QNNClassifier(module__n_accum_bits=20, rounding_threshold_bits=None, **FAST)
    with pytest.raises(ValueError, match="rounding_threshold_bits to at most 16") as error:
        model.fit(X, y)
    assert "module__n_accum_bits=20" in str(error.value)
    assert not hasattr(model, "integer_model_") and not model.initialized_
    wide = QNNClassifier(module__n_accum_bits=20, rounding_threshold_bits=12, **FAST).fit(X, y)
    assert max(len(table[0]) for table in wide.integer_model_.tables) <= 2**12


def test_a_wide_accumulator_read_whole_is_refused_without_allocating():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(
        input_dim=16, n_layers=2, n_outputs=2, n_w_bits=8, n_a_bits=8, n_accum_bits=30
    )
    net.enable_pruning()
    net.make_pruning_permanent()
    bits = int(net.accumulator_certificate().layers[0].bits.max())
    assert bits > MAX_LOOKUP_BITS  # a whole-accumulator table would hold 2^bits entries
    head = OutputHead("classification", classes=np.array([0, 1]))
    tracemalloc.start()
    with pytest.raises(ValueError, match=f"fc0's table would read {bits} bits"):
        net.to_integer_model(head, rounding_threshold_bits=None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10e6
    rounded = net.to_integer_model(head, rounding_threshold_bits=MAX_LOOKUP_BITS)
    assert rounded.tables[0].shape[1] <= 2**MAX_LOOKUP_BITS
