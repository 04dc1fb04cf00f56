"""The trained heads' held-out metrics on hand examples (the replay and estimators: test_offline_*)."""

import numpy as np
import pytest

from training import metrics


def test_expected_calibration_error_by_hand():
    # bin [0.1, 0.2): predictions 0.1, 0.1 with labels 0, 1 → |0.1 − 0.5| = 0.4 on 2 of 4 rows
    # bin [0.9, 1.0]: predictions 0.9, 0.9 with labels 1, 1 → |0.9 − 1.0| = 0.1 on 2 of 4 rows
    labels = np.array([0, 1, 1, 1])
    predictions = np.array([0.1, 0.1, 0.9, 0.9])
    assert metrics.expected_calibration_error(labels, predictions) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    curve = metrics.reliability_curve(labels, predictions)
    assert curve["count"].to_list() == [2, 2] and curve["observed"].to_list() == [0.5, 1.0]
    assert metrics.expected_calibration_error(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.0)


def test_auc_log_loss_pinball_and_coverage_by_hand():
    assert metrics.auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert metrics.auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(metrics.auc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert metrics.log_loss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    # α = 0.9: under-prediction by 10 costs 9, over-prediction by 10 costs 1
    assert metrics.pinball_loss(np.array([110.0, 90.0]), np.array([100.0, 100.0]), 0.9) == pytest.approx(5.0)
    assert metrics.coverage(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.0, 2.0])) == 0.5
