"""QONNX export: a valid opset-14 graph that the QONNX executor runs as the integer model."""

import numpy as np
import onnx
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.cleanup import cleanup_model
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier, QNNRegressor

# The module's fixture fits and exports a model through Brevitas (about 9 s).
pytestmark = pytest.mark.slow

# Random rows at three standard deviations: many codes clip at the input quantizer's range.
N_OUTLIERS = 100


@pytest.fixture(scope="module")
def exported(iris, tmp_path_factory):
    """(estimator, X, path of its export) per (classifier or regressor, qonnx_domain)."""
    X, y = iris
    Xd, yd = load_diabetes(return_X_y=True)
    Xd, yd = StandardScaler().fit_transform(Xd), (yd - yd.mean()) / yd.std()
    rng = np.random.default_rng(0)
    fixed = {"module__learned_lookups": False}  # iris' 4 features would learn them
    fitted = {
        "classifier": (QNNClassifier(random_state=0, max_epochs=5, **fixed).fit(X, y), X),
        "regressor": (QNNRegressor(random_state=0, max_epochs=5).fit(Xd, yd), Xd),
        # per-neuron scales chosen with the budget (codes of 1 and 2 where 4 would be)
        "budget_mse": (
            QNNClassifier(
                random_state=0,
                max_epochs=5,
                **fixed,
                module__n_accum_bits=6,
                module__weight_scaling="budget_mse",
            ).fit(X, y),
            X,
        ),
    }
    cases = {}
    for which, (model, X) in fitted.items():
        X = np.vstack([X, 3 * rng.standard_normal((N_OUTLIERS, X.shape[1]))])
        for qonnx_domain in (False, True):
            folder = tmp_path_factory.mktemp(f"{which}-{qonnx_domain}")
            model.export_onnx(folder / "model.onnx", qonnx_domain=qonnx_domain)
            cases[which, qonnx_domain] = (model, X, folder / "model.onnx")
    return cases


@pytest.mark.parametrize("qonnx_domain", [False, True])
def test_qonnx_export_at_opset_14(exported, qonnx_domain):
    _, _, path = exported["classifier", qonnx_domain]
    assert [file.name for file in path.parent.iterdir()] == ["model.onnx"]
    model = onnx.load(path)
    onnx.checker.check_model(model)
    opsets = {op.domain: op.version for op in model.opset_import}
    assert opsets[""] == 14
    domain = "qonnx.custom_op.general" if qonnx_domain else "onnx.brevitas"
    assert domain in opsets
    quant_domains = {node.domain for node in model.graph.node if node.op_type == "Quant"}
    assert quant_domains == {domain}
    initializers = {tensor.name for tensor in model.graph.initializer}
    assert [value.name for value in model.graph.input] == ["x"]
    assert not initializers & {value.name for value in model.graph.input}
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gemm") == ops.count("Mul") == 3


def test_every_quant_has_one_scale(exported):
    # Concrete ML's importer reads one scale per Quant: the per-channel weight scales are in
    # the Mul after each Gemm, and the weight Quant holds the integer codes at scale 1.
    estimator, _, path = exported["classifier", False]
    model = onnx.load(path)
    values = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    quants = [node for node in model.graph.node if node.op_type == "Quant"]
    assert all(values[node.input[1]].size == 1 for node in quants)
    gemms = [node for node in model.graph.node if node.op_type == "Gemm"]
    integer = estimator.integer_model_
    for layer, gemm in enumerate(gemms):
        weight_quant = next(node for node in quants if node.output[0] == gemm.input[1])
        np.testing.assert_array_equal(values[weight_quant.input[0]], integer.weights[layer])
        assert values[weight_quant.input[1]] == 1.0


@pytest.mark.parametrize("qonnx_domain", [False, True])
@pytest.mark.parametrize("which", ["classifier", "regressor", "budget_mse"])
def test_qonnx_executor_computes_the_integer_model(exported, which, qonnx_domain):
    model, X, path = exported[which, qonnx_domain]
    wrapper = cleanup_model(ModelWrapper(str(path)), override_inpsize=len(X))
    inputs = {wrapper.graph.input[0].name: X.astype(np.float32)}
    outputs = execute_onnx(wrapper, inputs)[wrapper.graph.output[0].name].astype(np.float64)

    # The export is the torch module, so the reference is the integer model built from it
    # without truncated table inputs (the estimator's may read truncated accumulators).
    integer = model.module_.to_integer_model(model.integer_model_.head)
    accumulators, step = integer.run(X), integer.scales[-1]
    # The graph computes in float32 (unit roundoff u = 2^-24). In steps s_x s_w, with
    # T = sum |input code x weight code| + |bias code|, the last layer's error is at most
    # u T for the dequantized inputs, u T for the products, n_in u T for the sum, u T for the
    # Mul by s_w and u T for the float32 step of the integer model: (n_in + 4) u T to first
    # order, (n_in + 5) u T with room. Hidden layers requantize to codes, so an error there
    # would show as a wrong code and a wrong accumulator, which the checks below catch.
    codes = integer.quantize_input(X)
    for layer in range(integer.n_layers - 1):
        codes = integer.lookup(layer, integer.accumulate(layer, codes))
    weights, biases = integer.weights[-1], integer.biases[-1]
    terms = np.abs(codes) @ np.abs(weights).T + np.abs(biases)
    bound = (weights.shape[1] + 5) * 2.0**-24 * terms * step
    assert np.all(np.abs(outputs - integer.decision_outputs(X)) <= bound)
    # Below half an output step, so the executor's outputs name the same integers.
    assert np.all(bound < step / 2)
    np.testing.assert_array_equal(np.round(outputs / step).astype(np.int64), accumulators)
    if which != "regressor":
        np.testing.assert_array_equal(integer.predictions(outputs), integer.predict(X))


def test_export_runs_as_written_one_row_at_a_time(exported):
    model, X, path = exported["classifier", False]
    wrapper = ModelWrapper(str(path))
    output = wrapper.graph.output[0].name
    rows = np.vstack(
        [execute_onnx(wrapper, {"x": row[None, :].astype(np.float32)})[output] for row in X[:3]]
    )
    integer = model.module_.to_integer_model(model.integer_model_.head)
    np.testing.assert_array_equal(np.round(rows / integer.scales[-1]), integer.run(X[:3]))


def test_learned_lookups_are_refused_by_name(iris, tmp_path):
    X, y = iris
    model = QNNClassifier(random_state=0, max_epochs=2).fit(X, y)  # "auto": learned
    with pytest.raises(NotImplementedError, match="module__learned_lookups=False"):
        model.export_onnx(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
