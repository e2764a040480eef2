"""``python -m benchmarks.levers``: the distillation lever, and the report it writes."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.neural_network import MLPClassifier

from benchmarks import levers
from benchmarks.protocol import Fold


def test_teacher_logits_are_centred_clipped_and_rank_as_the_teacher():
    X, y = make_classification(300, n_features=5, n_informative=3, n_classes=3, random_state=0)
    teacher = MLPClassifier((16,), max_iter=500, random_state=0).fit(X, y)
    logits = levers._teacher_logits(teacher, X)
    assert logits.dtype == np.float32 and logits.shape == (300, 3)
    np.testing.assert_allclose(logits.sum(axis=1), 0.0, atol=1e-4)
    assert np.ptp(logits, axis=1).max() <= -np.log(levers.MIN_PROBABILITY) + 1e-4
    np.testing.assert_array_equal(teacher.classes_[logits.argmax(axis=1)], teacher.predict(X))


def test_distillation_scores_against_the_datasets_own_labels():
    # Hastie's labels are -1 and +1: the student's largest output is read through the
    # teacher's classes_, not compared as an index.
    X, y = make_classification(400, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    y = np.where(y == 1, 1.0, -1.0)
    fold = Fold(X[:300], y[:300], X[300:], y[300:])
    assert levers.fold_score("distillation", fold) > 0.8


def test_report_gives_each_levers_change_and_gap_to_the_stored_ceiling():
    results = {
        ("hastie_10_2", lever): {"scores": [0.87, 0.88], "seconds": 10.0} for lever in levers.LEVERS
    }
    results["hastie_10_2", "200 epochs"] = {"scores": [0.92, 0.93], "seconds": 30.0}
    text = levers.report(results, ["hastie_10_2"], 2, "python -m benchmarks.levers")
    assert "Float ceiling 0.9370 (MLP)." in text  # frontier.json's
    assert "| defaults | 0.8750 | 0.870 0.880 | +0.0000 | +0.0620 | no | 10 |" in text
    assert "| 200 epochs | 0.9250 | 0.920 0.930 | +0.0500 | +0.0120 | yes | 30 |" in text
    assert text.count("\n| ") == 2 + len(levers.LEVERS)  # header, rule, one row a lever


def test_main_refuses_regression_and_unknown_datasets(capsys):
    for name in ("diabetes", "no_such_data"):
        with pytest.raises(SystemExit):
            levers.main(["--datasets", name])
        assert "classification datasets of benchmarks.protocol only" in capsys.readouterr().err
