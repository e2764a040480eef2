"""scikit-learn's own estimator checks, for both estimators at their defaults."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from concrete_qnn import QNNClassifier, QNNRegressor

# About 200 checks, each a few fits: about three minutes on 2 cores.
pytestmark = pytest.mark.slow


def expected_failed_checks(estimator):
    """The one check a stochastic minibatch learner cannot pass."""
    return {
        "check_sample_weight_equivalence_on_dense_data": (
            "minibatch training: a row of weight 2 and two copies of it fall in different "
            "batches, so the fits differ (rows of weight 0 are exactly rows removed: "
            "tests/test_sample_weight.py)"
        )
    }


@parametrize_with_checks(
    [
        QNNClassifier(random_state=0),
        QNNRegressor(random_state=0),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
