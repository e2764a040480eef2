"""The command-line main job."""

import subprocess
import sys

from concrete_qnn.cli import main


def test_train_prints_the_score_and_a_certificate_that_holds(capsys):
    assert main(["train", "--dataset", "iris", "--epochs", "15"]) == 0
    out = capsys.readouterr().out
    assert "iris: 112 training rows, 38 held-out rows" in out
    score = float(out.split("held-out accuracy: ")[1].split()[0])
    assert 0.6 < score <= 1.0
    assert "bound 8 bits: holds" in out
    assert out.count("\n  fc") == 3


def test_regression_dataset_reports_r2(capsys):
    assert main(["train", "--dataset", "diabetes", "--epochs", "10"]) == 0
    assert "held-out R^2: " in capsys.readouterr().out


def test_a_user_error_is_one_line_and_exit_status_2():
    result = subprocess.run(
        [sys.executable, "-m", "concrete_qnn", "train", "--dataset", "iris", "--n-accum-bits", "3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "concrete-qnn: error: n_accum_bits=3 is too small for n_w_bits=3 and n_a_bits=3: "
        "not even one weight-input product fits; raise n_accum_bits or lower the bit-widths"
    ]
    assert "Traceback" not in result.stderr
