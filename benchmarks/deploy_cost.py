"""Deployment cost of encrypted breast_cancer predictions, client and server apart.

Fits a QNNClassifier on breast_cancer (75 % split, standardized, ``random_state=0``) with the
given estimator settings, compiles it, writes its artifacts with ``save_fhe`` and reports:
client key generation (s), evaluation-key size (MB = 10^6 bytes), one ciphertext in and out
(bytes), key upload and server time per row over HTTP (``concrete-qnn serve`` in a
subprocess on 127.0.0.1; median over the rows, encryption and decryption excluded), and
rows/s of ``run_on_dask`` on a LocalCluster of 1 and 2 single-thread workers (each run
includes loading the circuit and keys on every worker). Every decrypted prediction is
checked against ``predict(X)``. Run, e.g.:

    python -m benchmarks.deploy_cost                          # estimator defaults
    python -m benchmarks.deploy_cost --prune 0.5 --rows 8
    python -m benchmarks.deploy_cost --set module__n_w_bits=2 --set module__n_accum_bits=6
"""

from __future__ import annotations

import argparse
import ast
import statistics
import tempfile
import time
from pathlib import Path

import distributed
import httpx
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier
from concrete_qnn.deploy import FHEClient
from concrete_qnn.deploy.batch import run_on_dask
from concrete_qnn.deploy.http_server import serve_in_subprocess


def parse_settings(pairs: list[str]) -> dict:
    """``["module__n_w_bits=2", ...]`` -> ``{"module__n_w_bits": 2, ...}``."""
    settings = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not name or not value:
            raise SystemExit(f"--set takes NAME=VALUE, got {pair!r}")
        try:
            settings[name] = ast.literal_eval(value)
        except (SyntaxError, ValueError):
            settings[name] = value
    return settings


def rows_per_second(directory: Path, ciphertexts, evaluation_keys, n_workers: int):
    with (
        distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        start = time.perf_counter()
        results = run_on_dask(client, directory / "server", ciphertexts, evaluation_keys)
        return len(ciphertexts) / (time.perf_counter() - start), results


def measure(settings: dict, prune: float, n_rows: int, workdir: Path) -> dict:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    model = QNNClassifier(random_state=0, **settings).fit(X_train, y_train)
    if prune:
        model = model.prune(X_train, y_train, prune)
    model.compile(X_train)
    directory = model.save_fhe(workdir / "model")
    rows = X_test[:n_rows]
    expected = model.predict(rows)

    client = FHEClient(directory / "client")
    start = time.perf_counter()
    client.keygen()
    keygen_s = time.perf_counter() - start
    evaluation_keys = client.evaluation_keys()
    ciphertexts = client.encrypt(rows)

    with serve_in_subprocess(directory, "--keys-dir", str(workdir / "keys")) as url:
        with httpx.Client(base_url=url, timeout=None) as http:
            start = time.perf_counter()
            key_id = http.post("/keys", content=evaluation_keys).raise_for_status().json()
            upload_s = time.perf_counter() - start
            latencies, results = [], []
            for ciphertext in ciphertexts:
                start = time.perf_counter()
                answer = http.post(f"/run/{key_id['key_id']}", content=ciphertext)
                latencies.append(time.perf_counter() - start)
                results.append(answer.raise_for_status().content)
    assert np.array_equal(client.predict(results), expected), "HTTP predictions differ"

    rates = {}
    for n_workers in (1, 2):
        rates[n_workers], on_dask = rows_per_second(
            directory, ciphertexts, evaluation_keys, n_workers
        )
        assert np.array_equal(client.predict(on_dask), expected), "Dask predictions differ"
    return {
        "settings": settings or "defaults",
        "prune": prune,
        "table lookups": model.fhe_circuit_.n_table_lookups,
        "circuit bits": model.fhe_circuit_.max_bit_width,
        "keygen s": round(keygen_s, 2),
        "evaluation keys MB": round(len(evaluation_keys) / 1e6, 1),
        "ciphertext in bytes": len(ciphertexts[0]),
        "ciphertext out bytes": len(results[0]),
        "key upload s": round(upload_s, 2),
        "server s/row (HTTP)": round(statistics.median(latencies), 3),
        "rows/s 1 worker": round(rates[1], 3),
        "rows/s 2 workers": round(rates[2], 3),
        "2/1 workers": round(rates[2] / rates[1], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deploy_cost", description=__doc__)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an estimator parameter (repeatable), e.g. module__n_w_bits=2",
    )
    parser.add_argument("--prune", type=float, default=0.0, help="fraction for .prune()")
    parser.add_argument("--rows", type=int, default=4, help="encrypted rows (default 4)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        row = measure(parse_settings(args.set), args.prune, args.rows, Path(workdir))
    print("| " + " | ".join(row) + " |")
    print("|" + " --- |" * len(row))
    print("| " + " | ".join(str(value) for value in row.values()) + " |")


if __name__ == "__main__":
    main()
