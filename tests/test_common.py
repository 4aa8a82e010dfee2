"""scikit-learn's common estimator checks, with an explicit failure table."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skinfluence.utils._test_common import estimators_to_check, expected_failed_checks


@parametrize_with_checks(
    list(estimators_to_check()), expected_failed_checks=expected_failed_checks
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
