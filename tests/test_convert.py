"""Conversion: the certificate of a pruned network equals brute-force enumeration."""

import pytest
import torch
from network_helpers import (
    assert_certificate_matches_enumeration,
    train_steps,
)

from concrete_qnn import SparseQuantNeuralNetwork


@pytest.mark.parametrize(
    ("signed", "narrow", "a_bits"),
    [(True, False, 2), (False, False, 2), (True, True, 3), (False, True, 2)],
)
def test_certificate_equals_brute_force_on_tiny_layers(signed, narrow, a_bits):
    torch.manual_seed(1)
    net = SparseQuantNeuralNetwork(
        4,
        2,
        2,
        n_hidden_neurons_multiplier=1,
        n_a_bits=a_bits,
        quant_signed=signed,
        quant_narrow=narrow,
        n_accum_bits=6,
    )
    train_steps(net, 4)
    certificate = net.make_pruning_permanent()
    assert certificate.holds and certificate.max_bits <= 6
    assert_certificate_matches_enumeration(net, certificate)


def test_certificate_table_as_text_and_frame():
    net = SparseQuantNeuralNetwork(4, 2, 3)
    train_steps(net, 4)
    certificate = net.make_pruning_permanent()
    text = certificate.to_text()
    assert text.splitlines()[0].split() == [
        "layer",
        "neurons",
        "fan_in",
        "input_codes",
        "lo",
        "hi",
        "bits",
    ]
    assert "bound 8 bits: holds" in text
    frame = certificate.to_frame()
    assert list(frame.index) == ["fc0", "fc1"]
    assert frame.loc["fc1", "neurons"] == 3
    assert frame["bits"].max() == certificate.max_bits <= 8
