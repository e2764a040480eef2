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


@pytest.mark.slow
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
    assert "mean over 2 of the benchmark's 5 folds (fewer folds: differences of a point" in text
    assert "Float ceiling 0.9370 (MLP)." in text  # frontier.json's
    assert "| defaults | 0.8750 | 0.870 0.880 | +0.0000 | +0.0620 | no | 10 |" in text
    assert "| 200 epochs | 0.9250 | 0.920 0.930 | +0.0500 | +0.0120 | yes | 30 |" in text
    assert text.count("\n| ") == 2 + len(levers.LEVERS)  # header, rule, one row a lever


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--datasets", "diabetes"],
            "not a classification dataset of benchmarks.protocol: diabetes",
        ),
        (["--datasets", "no_such_data"], "not a classification dataset"),
        (["--datasets", "classification_100k"], "not a classification dataset"),  # 3 folds
        (["--folds", "0"], "--folds takes 1 to 5 and --jobs at least 1"),
        (["--folds", "6"], "--folds takes 1 to 5"),
        (["--jobs", "0"], "--jobs at least 1"),
    ],
)
def test_main_refuses_what_it_cannot_measure_before_writing(arguments, message, capsys):
    before = levers.REPORT.read_text()
    with pytest.raises(SystemExit):
        levers.main(arguments)
    assert message in capsys.readouterr().err
    assert levers.REPORT.read_text() == before
