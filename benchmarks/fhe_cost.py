"""FHE cost of breast_cancer at default settings, before and after ``.prune(X, y, 0.5)``.

Reports compile time, key generation time, latency per encrypted sample (median over a
few rows), the number of table lookups and the circuit's bit-width. Run:

    python -m benchmarks.fhe_cost
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier

N_ENCRYPTED = 3


def measure(name: str, model, X_train, X_test) -> dict:
    start = time.perf_counter()
    model.compile(X_train)
    compile_s = time.perf_counter() - start
    circuit = model.fhe_circuit_
    start = time.perf_counter()
    circuit.keygen()
    keygen_s = time.perf_counter() - start
    latencies = []
    for row in X_test[:N_ENCRYPTED]:
        start = time.perf_counter()
        encrypted = model.predict(row[None, :], fhe="execute")
        latencies.append(time.perf_counter() - start)
        assert np.array_equal(encrypted, model.predict(row[None, :]))
    return {
        "model": name,
        "hidden widths": model.module_.layer_widths()[1:-1],
        "table lookups": circuit.n_table_lookups,
        "circuit bits": circuit.max_bit_width,
        "compile s": round(compile_s, 2),
        "keygen s": round(keygen_s, 2),
        "latency s/sample": round(statistics.median(latencies), 2),
    }


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    model = QNNClassifier(random_state=0).fit(X_train, y_train)
    pruned = model.prune(X_train, y_train, 0.5)
    rows = [
        measure("default", model, X_train, X_test),
        measure("pruned 0.5", pruned, X_train, X_test),
    ]
    for name, fitted in (("default", model), ("pruned 0.5", pruned)):
        print(f"{name}: held-out accuracy {fitted.score(X_test, y_test):.4f}")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
