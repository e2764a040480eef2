"""``python -m benchmarks.frontier``: its datasets, and the report it writes from its results."""

import json

import numpy as np
import pytest

from benchmarks import frontier, protocol


def test_grown_suite_has_the_kinds_the_benchmark_lacked():
    X, y = protocol.GROWN_DATASETS["checkerboard_6x6"][0]()
    assert X.shape == (2000, 2) and set(np.unique(y)) == {0, 1}
    cells = np.floor(X).astype(int)
    assert len({tuple(cell) for cell in cells}) == 36  # 36 alternating regions
    X, y = protocol.GROWN_DATASETS["clusters_4x4"][0]()
    assert X.shape == (2000, 10) and len(np.unique(y)) == 4
    X, y = protocol.GROWN_DATASETS["swiss_roll"][0]()
    assert X.shape == (2000, 3) and y.dtype.kind == "f"
    assert protocol.GROWN_DATASETS["swiss_roll"][1] == "regression"


def test_large_twins_take_three_folds():
    assert protocol.n_folds("classification_100k") == protocol.LARGE_N_FOLDS == 3
    assert protocol.n_folds("breast_cancer") == protocol.N_FOLDS == 5
    assert frontier.candidates_of("regression_100k", frontier.CANDIDATES) == list(
        frontier.LARGE_CANDIDATES
    )
    assert frontier.candidates_of("circles", frontier.CANDIDATES) == list(frontier.CANDIDATES)
    # 13 features: the defaults keep 60 epochs and fixed lookups there
    assert frontier.candidates_of("wine", frontier.CANDIDATES) == [
        candidate
        for candidate in frontier.CANDIDATES
        if candidate not in frontier.FEW_FEATURE_CANDIDATES
    ]
    assert frontier.defaults_candidate("wine") == "8 bits"
    assert frontier.defaults_candidate("circles") == "8 bits, learned lookups, 200 epochs"


def _results():
    scores = {"8 bits": [0.96, 0.98], "6 bits": [0.95, 0.97]}
    data = {
        "ceiling | breast_cancer": {"ceiling": 0.98, "ceiling model": "linear"},
        "peer | breast_cancer": {
            "5-fold accuracy": 0.874,
            "folds": [0.87, 0.878],
            "bootstraps": 1320,
            "complexity": "4.10e+11",
            "accumulator bits": 11,
            "s/row": 23.8,
            "disagreements": 0,
        },
    }
    for candidate, (seconds, lookups, bits) in {
        "8 bits": (10.0, 128, 8),
        "6 bits": (3.0, 128, 6),
    }.items():
        data[f"accuracy | breast_cancer | {candidate}"] = {
            "scores": scores[candidate],
            "fit s/epoch": 0.1 if candidate == "8 bits" else 0.12,
            "certificates hold": True,
        }
        data[f"cost | breast_cancer | {candidate}"] = {
            "accumulator bits": bits,
            "lookups": lookups,
            "bootstraps": lookups * (1 + 8 - bits),
            "complexity": "5.73e+10",
            "s/row": seconds,
            "disagreements": 0,
        }
    return data


def test_report_rows_compare_with_the_ceiling_the_peer_and_the_former_defaults(
    tmp_path, monkeypatch
):
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps(_results()))
    monkeypatch.setattr(frontier, "REPORT", tmp_path / "FRONTIER.md")
    monkeypatch.setattr(frontier, "PLOT", tmp_path / "frontier.png")
    store = frontier.Store(path, resume=True)
    frontier.write(store, ["breast_cancer"], ["8 bits", "6 bits"], "python -m x", "idle")
    text = (tmp_path / "FRONTIER.md").read_text()
    assert (
        "| 8 bits | 0.9700 | 0.960 0.980 | 0.9800 | +0.0100 | yes | 8 | 128 | 128 | 5.73e+10 "
        "| 10.00 | 0 | 1.00 |" in text
    )
    assert "| 6 bits | 0.9600 | 0.950 0.970 | 0.9800 | +0.0200 | yes | 6 | 128 | 384 |" in text
    assert "| 3.00 | 0 | 1.20 |" in text
    assert (
        "| Concrete ML 1.9, its defaults | 0.8740 | 0.870 0.878 | 0.9800 | +0.1060 | no |" in text
    )
    assert "| 8 bits | 1 of 1 | +0.0100 | +0.0100 (breast_cancer) | 10.00 (0.42x) |" in text
    assert "| 6 bits | 1 of 1 | +0.0200 | +0.0200 (breast_cancer) | 3.00 (0.13x) |" in text
    # breast_cancer has 30 features: the defaults fit it at 8 bits with fixed lookups
    assert f"| {frontier.DEFAULTS} | 1 of 1 | +0.0100 | +0.0100 (breast_cancer) |" in text
    assert (tmp_path / "frontier.png").stat().st_size > 0


def test_unknown_names_are_refused(capsys):
    with pytest.raises(SystemExit):
        frontier.main(["--datasets", "mnist"])
    assert "unknown datasets or candidates: ['mnist']" in capsys.readouterr().err


def test_report_only_needs_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(frontier, "RESULTS", tmp_path / "frontier.json")
    (tmp_path / "frontier.json").write_text(json.dumps(_results()))
    with pytest.raises(SystemExit):
        frontier.main(["--report-only", "--datasets", "breast_cancer"])
    assert "holds no run to report" in capsys.readouterr().err
