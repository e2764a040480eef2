"""What a fit says while it runs: ``epoch k/N`` on the progress bar, one logged line at the
start of a long fit, nothing for a short one."""

import logging

import pytest

from concrete_qnn import QNNClassifier

FAST = {"max_epochs": 2, "random_state": 0}
LOGGER = "concrete_qnn.training.progress"


def test_the_progress_bar_counts_epochs(iris, capsys):
    QNNClassifier(**FAST, progress_bar=True).fit(*iris)
    bars = capsys.readouterr().err
    assert "epoch 1/2" in bars and "epoch 2/2" in bars


def test_a_long_fit_says_so_at_its_start(iris, caplog):
    """Any fit is "long" past 0 seconds: the line gives rows, steps and the estimate."""
    model = QNNClassifier(**FAST, callbacks__long_fit_notice__seconds=0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model.fit(*iris)
    (record,) = [record for record in caplog.records if record.name == LOGGER]
    assert record.levelno == logging.WARNING
    assert "expected to take about" in record.message
    assert "2 epochs of 5 steps on 150 rows (10 steps" in record.message


@pytest.mark.parametrize(
    "params",
    [{}, {"progress_bar": True, "callbacks__long_fit_notice__seconds": 0}],
    ids=["short fit", "progress bar shown"],
)
def test_nothing_is_said_of_a_short_fit_or_beside_a_progress_bar(iris, caplog, params):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        QNNClassifier(**FAST, **params).fit(*iris)
    assert not [record for record in caplog.records if record.name == LOGGER]
