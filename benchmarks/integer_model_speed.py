"""Integer-model prediction vs the torch eval forward of the same module.

A digits-sized model (64 inputs, the estimator's defaults) predicts 100,000 rows; each side
is timed 5 times in this one run and the medians are compared. Run:

    python -m benchmarks.integer_model_speed
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier

N_ROWS = 100_000
REPEATS = 5


def median_seconds(function) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    model = QNNClassifier(random_state=0, max_epochs=10).fit(X, y)
    rows = np.random.default_rng(0).integers(0, len(X), N_ROWS)
    X_big = X[rows] + np.random.default_rng(1).normal(0, 0.1, (N_ROWS, X.shape[1]))
    X_big = X_big.astype(np.float32)
    integer = model.integer_model_
    module = model.module_.eval()
    X_torch = torch.as_tensor(X_big)

    def torch_forward():
        with torch.no_grad():
            return module(X_torch)

    integer_labels = integer.decision_outputs(X_big).argmax(axis=1)
    torch_labels = torch_forward().argmax(dim=1).numpy()
    integer_s = median_seconds(lambda: integer.decision_outputs(X_big))
    torch_s = median_seconds(torch_forward)
    print(
        f"rows: {N_ROWS}, layer widths: {module.layer_widths()}, torch threads: "
        f"{torch.get_num_threads()}"
    )
    print(f"integer model: {integer_s:.3f} s (median of {REPEATS})")
    print(f"torch eval forward: {torch_s:.3f} s (median of {REPEATS})")
    print(f"ratio integer / torch: {integer_s / torch_s:.2f} (target <= 1.00)")
    print(f"label agreement: {np.mean(integer_labels == torch_labels):.5f}")


if __name__ == "__main__":
    main()
