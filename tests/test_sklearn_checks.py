"""scikit-learn's own estimator checks, for both estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from concrete_qnn import QNNClassifier, QNNRegressor


@parametrize_with_checks(
    [
        QNNClassifier(random_state=0, max_epochs=30),
        QNNRegressor(random_state=0, max_epochs=30),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
