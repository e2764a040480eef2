"""Test configuration: deterministic hypothesis runs on CI; shared data."""

import os

import pytest
from hypothesis import settings
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def iris():
    """Standardized iris features (150, 4) and labels (150,)."""
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y
