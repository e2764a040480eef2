"""scikit-learn's own estimator checks, for both estimators at their defaults."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from concrete_qnn import QNNClassifier, QNNRegressor


@parametrize_with_checks(
    [
        QNNClassifier(random_state=0),
        QNNRegressor(random_state=0),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
