"""The redesign keeps every fitted model bit for bit: fingerprints recorded before it.

Each case fits an estimator at a fixed seed and hashes what it learned: the integer model's
arrays (weight and bias codes, scales, tables and their offsets, the input scale and the
rounding shifts) and its predictions on a fixed set. ``tests/fingerprints/fitted.json`` was
written by ``python tests/test_fingerprints.py`` at the code before the redesign; a change that
moves any bit of any case fails here. Regenerate it only for a change that means to alter
training, and say so in its commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier, QNNRegressor

FINGERPRINTS = Path(__file__).parent / "fingerprints" / "fitted.json"
# A model file written before the redesign (classifier, l1_budget-2/2/5): it still loads.
SAVED_MODEL = FINGERPRINTS.parent / "classifier-l1_budget-2-2-5.npz"

# (name, estimator, module parameters): both rules, 2/2/5, 3/3/8 and the 6-bit budget_mse
# default, each read with rounding_threshold_bits None and 5. Each case names its bound and
# its lookups, so that a change of the estimators' defaults leaves the recorded cases alone.
_PINNED = dict(module__n_accum_bits=8, module__learned_lookups=False)
_SETTINGS = {
    "fan_in-3/3/8": dict(_PINNED, module__accumulator_rule="fan_in"),
    "l1_budget-3/3/8": dict(_PINNED, module__accumulator_rule="l1_budget"),
    "fan_in-2/2/5": dict(
        _PINNED,
        module__accumulator_rule="fan_in",
        module__n_w_bits=2,
        module__n_a_bits=2,
        module__n_accum_bits=5,
    ),
    "l1_budget-2/2/5": dict(
        _PINNED,
        module__accumulator_rule="l1_budget",
        module__n_w_bits=2,
        module__n_a_bits=2,
        module__n_accum_bits=5,
    ),
    "budget_mse-3/3/6": dict(
        _PINNED,
        module__accumulator_rule="l1_budget",
        module__weight_scaling="budget_mse",
        module__n_accum_bits=6,
    ),
}
CASES = [
    (f"{task}-{setting}-r{rounding}", task, setting, rounding)
    for task in ("classifier", "regressor")
    for setting in _SETTINGS
    for rounding in (None, 5)
    # 2/2/5 reads at most 5 bits: rounding 5 there is rounding None.
    if not (rounding == 5 and setting.endswith("/5"))
]


def _data(task):
    if task == "classifier":
        X, y = load_breast_cancer(return_X_y=True)
    else:
        X, y = load_diabetes(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(X))[:240]
    return StandardScaler().fit_transform(X[rows]), y[rows]


def _digest(array) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(
        str(array.dtype).encode() + str(array.shape).encode() + array.tobytes()
    ).hexdigest()[:16]


def fingerprint(task, setting, rounding) -> dict:
    """The hashes of one fitted case (see the module docstring)."""
    X, _ = _data(task)
    model = _fitted(task, setting, rounding)
    integer = model.integer_model_
    result = {"input_scale": repr(integer.input_scale), "lsbs_to_remove": integer.lsbs_to_remove}
    for name in ("weights", "biases", "scales", "tables", "table_offsets"):
        result[name] = [_digest(array) for array in getattr(integer, name)]
    result["predictions"] = _digest(model.predict(X[200:]))
    result["decision_outputs"] = _digest(integer.decision_outputs(X[200:]))
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task", "setting", "rounding"), CASES, ids=[c[0] for c in CASES])
def test_fitted_model_is_bit_for_bit_the_recorded_one(name, task, setting, rounding):
    recorded = json.loads(FINGERPRINTS.read_text())
    assert fingerprint(task, setting, rounding) == recorded[name]


def test_model_file_written_before_the_redesign_loads_and_predicts_the_same():
    from concrete_qnn import load

    model = load(SAVED_MODEL)
    X, _ = _data("classifier")
    recorded = json.loads(FINGERPRINTS.read_text())["classifier-l1_budget-2/2/5-rNone"]
    assert _digest(model.predict(X[200:])) == recorded["predictions"]
    assert _digest(model.decision_outputs(X[200:])) == recorded["decision_outputs"]
    assert [_digest(w) for w in model.weights] == recorded["weights"]


def _fitted(task, setting, rounding):
    X, y = _data(task)
    estimator = QNNClassifier if task == "classifier" else QNNRegressor
    return estimator(
        **_SETTINGS[setting], max_epochs=4, random_state=0, rounding_threshold_bits=rounding
    ).fit(X[:200], y[:200])


if __name__ == "__main__":
    FINGERPRINTS.parent.mkdir(exist_ok=True)
    fingerprints = {name: fingerprint(*case) for name, *case in CASES}
    _fitted("classifier", "l1_budget-2/2/5", None).save(SAVED_MODEL)
    FINGERPRINTS.write_text(json.dumps(fingerprints, indent=1, sort_keys=True) + "\n")
    sys.exit(0)
