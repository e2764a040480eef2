"""The deployment tests' model: a tiny iris classifier (2/2/6 bits, one hidden layer of 4
neurons: a 5-bit circuit) keeps key generation to a few seconds and a row to about a second.
"""

import pytest

from concrete_qnn import QNNClassifier
from concrete_qnn.deploy import FHEClient


@pytest.fixture(scope="session")
def tiny():
    """``tiny(X, y, n_accum_bits=6)``: the tiny classifier fitted and compiled."""

    def fit_and_compile(X, y, n_accum_bits=6):
        model = QNNClassifier(
            random_state=0,
            max_epochs=10,
            module__n_layers=2,
            module__n_hidden_neurons_multiplier=1,
            module__n_hidden_neurons_min=0,
            module__n_w_bits=2,
            module__n_a_bits=2,
            module__n_accum_bits=n_accum_bits,
        )
        return model.fit(X, y).compile(X[:20])

    return fit_and_compile


@pytest.fixture(scope="module")
def deployed(iris, tiny, tmp_path_factory):
    """The model, its save_fhe directory and a client with seeded keys."""
    X, y = iris
    model = tiny(X, y)
    directory = model.save_fhe(tmp_path_factory.mktemp("deploy") / "model")
    client = FHEClient(directory / "client")
    client.keygen(seed=1)
    return model, directory, client
