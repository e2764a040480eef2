"""Test configuration: deterministic hypothesis runs on CI; shared data."""

import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import settings
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.preprocessing import StandardScaler

_EXIT_STATUS = pytest.StashKey[int]()

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Exit with pytest's status when it is not 0, before the interpreter shuts down.

    Once concrete-python's runtime has executed a circuit, the process exits with status 0
    whatever Python asks (measured with concrete-python 2.11: ``sys.exit(3)`` after
    ``encrypt_run_decrypt`` exits 0), so a run with failing tests would look green.
    """
    status = config.stash.get(_EXIT_STATUS, 0)
    if status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _standardized(load) -> tuple:
    X, y = load(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="session")
def iris():
    """Standardized iris features (150, 4) and labels (150,)."""
    return _standardized(load_iris)


@pytest.fixture(scope="session")
def breast_cancer():
    """Standardized breast_cancer features (569, 30) and labels (569,)."""
    return _standardized(load_breast_cancer)


@pytest.fixture(scope="session")
def iris_classifier(iris):
    """``QNNClassifier(max_epochs=15, random_state=0)`` fitted on ``iris``; shared: copy it
    before changing it."""
    from concrete_qnn import QNNClassifier

    return QNNClassifier(max_epochs=15, random_state=0).fit(*iris)


def _check_one_fitted_model(model, X):
    """Assert that a fitted estimator answers for one pruned, certified, integer model.

    The pruning masks are folded in; the certificate holds and is the network's own;
    predictions come from the integer model, which is the network read with the
    estimator's ``rounding_threshold_bits``; read at full width (None) it agrees with the
    torch module in eval mode (outputs within one output quantization step, same labels).
    """
    from concrete_qnn.estimators.lifecycle import integer_model

    module, integer = model.module_, model.integer_model_
    assert not module.pruning_enabled
    certificate = model.certificate_
    assert certificate.holds and certificate.max_bits <= module.n_accum_bits
    without_lookups = [
        {key: value for key, value in row.items() if key != "lookup_bits"}
        for row in certificate.rows()
    ]
    assert without_lookups == module.accumulator_certificate(model.rounding_threshold_bits).rows()
    np.testing.assert_array_equal(model.predict(X), integer.predict(X))
    rebuilt = integer_model(model, model.rounding_threshold_bits)
    np.testing.assert_array_equal(rebuilt.run(X), integer.run(X))
    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
        with torch.no_grad():
            inputs = torch.as_tensor(X, dtype=torch.float32, device=device)
            expected = module(inputs).double().cpu().numpy()
    finally:
        module.train(was_training)
    exact = integer_model(model, None)
    outputs = exact.decision_outputs(X)
    assert np.all(np.abs(outputs - expected) <= exact.scales[-1])
    if exact.head.task == "classification":
        assert np.mean(outputs.argmax(axis=1) == expected.argmax(axis=1)) >= 0.999


@pytest.fixture(scope="session")
def check_one_fitted_model():
    """``check(model, X)``: the fitted estimator answers for one pruned, certified,
    integer model (see ``_check_one_fitted_model``)."""
    return _check_one_fitted_model


def _assert_same_integer_model(first, second) -> bool:
    """Assert that two fitted estimators hold bit-identical integer models."""
    one, other = first.integer_model_, second.integer_model_
    for name in ("weights", "biases", "scales", "tables", "table_offsets"):
        assert len(getattr(one, name)) == len(getattr(other, name)), name
        for a, b in zip(getattr(one, name), getattr(other, name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert one.input_scale == other.input_scale
    assert one.lsbs_to_remove == other.lsbs_to_remove
    return True


@pytest.fixture(scope="session")
def same_integer_model():
    """``same(first, second)``: assert bit-identical integer models; returns True."""
    return _assert_same_integer_model
