"""Concrete ML 1.9 importing our QONNX export: does its circuit agree with the integer model?

Two steps in two environments, since Concrete ML brings its own torch and is never a
dependency of this project:

    python -m benchmarks.peer_import export /tmp/peer        # this project's environment
    python3 -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install concrete-ml==1.9.0
    /tmp/peer-venv/bin/python benchmarks/peer_import.py compile /tmp/peer

``export`` fits small models (iris, breast_cancer, diabetes at several bit-widths) and
writes, per model, the ONNX file, the standardized features, the exact last-layer
accumulators of our integer model and its output step. ``compile`` (numpy, onnx and
Concrete ML only) runs ``compile_onnx_model(model, X, import_qat=True, n_bits=b)`` on each,
with ``b`` = ``n_accum_bits`` and ``n_accum_bits + 4`` (an integer ``b`` sets Concrete ML's
``model_outputs`` bits, the precision it re-quantizes the last ``Mul`` to; the ``Quant``
nodes fix every other quantizer), simulates the circuit on ``X`` and prints per model: the
circuit's bit-width and table lookups (ours: ``n_accum_bits`` and one per hidden neuron),
the largest output difference in our output steps, and whether rounding the outputs to our
steps gives our accumulators exactly.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

# (dataset, n_w_bits, n_a_bits, n_accum_bits, quant_signed)
CONFIGS = [
    (name, *bits, signed)
    for name in ("iris", "breast_cancer", "diabetes")
    for bits, signed in (
        ((3, 3, 8), True),
        ((3, 3, 8), False),
        ((2, 2, 5), True),
        ((4, 4, 10), True),
    )
]


def export(folder: Path) -> None:
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    from concrete_qnn import QNNClassifier, QNNRegressor

    folder.mkdir(parents=True, exist_ok=True)
    for name, n_w_bits, n_a_bits, n_accum_bits, signed in CONFIGS:
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        X = StandardScaler().fit_transform(X).astype(np.float32)
        estimator = QNNRegressor if name == "diabetes" else QNNClassifier
        if name == "diabetes":
            y = (y - y.mean()) / y.std()
        model = estimator(
            random_state=0,
            max_epochs=20,
            module__n_w_bits=n_w_bits,
            module__n_a_bits=n_a_bits,
            module__n_accum_bits=n_accum_bits,
            module__quant_signed=signed,
        ).fit(X, y)
        stem = f"{name}_{n_w_bits}{n_a_bits}{n_accum_bits}_{'signed' if signed else 'unsigned'}"
        model.export_onnx(folder / f"{stem}.onnx")
        # The export is the network itself, read whole (no lookup tables): compare with the
        # integer model that reads every accumulator bit, not the default 5-bit lookups.
        integer = model.set_params(rounding_threshold_bits=None).integer_model_
        np.savez(folder / f"{stem}.npz", X=X, accumulators=integer.run(X), step=integer.scales[-1])
        lookups = sum(model.module_.layer_widths()[1:-1])
        meta = {"n_accum_bits": n_accum_bits, "table_lookups": lookups}
        (folder / f"{stem}.json").write_text(json.dumps(meta))
        print(stem, "score", round(model.score(X, y), 4), flush=True)


def compile_all(folder: Path) -> None:
    import onnx
    from concrete.ml.torch.compile import compile_onnx_model

    print(
        "model | ours: bits, lookups | model_outputs | peer: bits, lookups | max |diff| steps "
        "| exact | compile s"
    )
    for path in sorted(folder.glob("*.onnx")):
        data = np.load(path.with_suffix(".npz"))
        meta = json.loads(path.with_suffix(".json").read_text())
        X, accumulators, step = data["X"], data["accumulators"], data["step"]
        for model_outputs in (meta["n_accum_bits"], meta["n_accum_bits"] + 4):
            start = time.perf_counter()
            try:
                module = compile_onnx_model(
                    onnx.load(path), X, import_qat=True, n_bits=model_outputs
                )
            except Exception as error:  # report the peer's refusal and go on
                print(path.stem, "|", f"{type(error).__name__}: {error}")
                continue
            seconds = time.perf_counter() - start
            outputs = module.forward(X, fhe="simulate")
            circuit = module.fhe_circuit
            print(
                f"{path.stem} | {meta['n_accum_bits']}, {meta['table_lookups']} | {model_outputs} "
                f"| {circuit.graph.maximum_integer_bit_width()}, "
                f"{circuit.programmable_bootstrap_count} "
                f"| {np.abs(outputs / step - accumulators).max():.3f} "
                f"| {np.array_equal(np.round(outputs / step), accumulators)} | {seconds:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    {"export": export, "compile": compile_all}[command](folder)
