"""QONNX export of the quantized network through Brevitas (opset 14)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from concrete_qnn.convert import layer_codes

QONNX_DOMAIN = "qonnx.custom_op.general"
# The domain Concrete ML's importer (compile_onnx_model(..., import_qat=True)) reads.
BREVITAS_DOMAIN = "onnx.brevitas"
OPSET_VERSION = 14


def export_onnx(module, path, input_dim: int, qonnx_domain: bool = False):
    """Write ``module`` (a permanent-pruned SparseQuantNeuralNetwork) as QONNX to ``path``.

    The graph uses opset 14 and computes the module's eval-mode forward pass. Its input
    ``x`` has shape (1, ``input_dim``) and its output (1, n_outputs), both float32 (QONNX
    tools fix the batch size: ``qonnx.util.cleanup.cleanup_model(model,
    override_inpsize=N)`` sets another). Weights are initializers and not graph inputs.
    Each layer is ``Gemm`` over its input ``Quant``, a ``Quant`` of the integer weight
    codes (scale 1) and a ``Quant`` of the bias in units of the input scale, followed by a
    ``Mul`` by the per-output-channel weight scales: the same function as Brevitas'
    per-channel weight ``Quant``, in a form whose ``Gemm`` has one scale per layer, as
    Concrete ML's importer needs. ``Quant`` nodes and their opset import use the domain
    ``onnx.brevitas`` unless ``qonnx_domain`` asks for ``qonnx.custom_op.general``. The
    model passes ``onnx.checker``; only ``path`` is written.

    Returns
    -------
    onnx.ModelProto
        The model written to ``path``.

    Raises
    ------
    ImportError
        If the ``onnx`` extra is not installed.
    NotImplementedError
        If the module learned its lookups (``learned_lookups_used``): QONNX has no operator
        for a per-neuron learned function, so such a model is deployed through its integer
        model (``save``) and FHE artifacts (``save_fhe``), not through ONNX.
    """
    if module.learned_lookups_used:
        raise NotImplementedError(
            "QONNX export covers fixed activations only, and this network learned its "
            "lookups (learned_lookups_used=True): refit with module__learned_lookups=False "
            "to export it, or deploy its integer model (save) or FHE artifacts (save_fhe)"
        )
    try:
        import onnx
        import torch
        from brevitas.export import export_qonnx
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"QONNX export needs the onnx extra: pip install 'concrete-qnn[onnx]' ({error})"
        ) from None
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        # The exporter also writes an external-data file beside its output: keep both in a
        # scratch folder so that nothing but ``path`` is written.
        with tempfile.TemporaryDirectory() as scratch:
            exported = Path(scratch) / "model.onnx"
            with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
                export_qonnx(
                    module,
                    input_t=torch.zeros(1, input_dim, device=device),
                    export_path=str(exported),
                    opset_version=OPSET_VERSION,
                )
            model = onnx.load(str(exported))
        codes = [layer_codes(module, i) for i in range(module.n_layers)]
    finally:
        module.train(was_training)
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    del graph.input[:]
    graph.input.extend(inputs)
    _scale_after_gemm(model, [(weights, biases) for weights, biases, _ in codes])
    if not qonnx_domain:
        for node in graph.node:
            if node.domain == QONNX_DOMAIN:
                node.domain = BREVITAS_DOMAIN
        imports = [op for op in model.opset_import if op.domain != QONNX_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(imports)
        model.opset_import.append(onnx.helper.make_opsetid(BREVITAS_DOMAIN, 1))
    # Shapes of the new accumulators, which the QONNX executor needs for every tensor.
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def _scale_after_gemm(model, codes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Move each ``Gemm``'s per-channel weight scale into a ``Mul`` after it, in place.

    Brevitas writes layer ``i`` as ``Gemm(Quant(x, s_x), Quant(W, s_w), Quant(b, s_x s_w))``
    with ``s_w`` of shape (n_out, 1). With weight codes ``Q`` and bias codes ``B``
    (``codes[i]``: int64 (n_out, n_in) and (n_out,)), the graph becomes
    ``Mul(Gemm(Quant(x, s_x), Quant(Q, 1), Quant(B s_x, s_x)), s_w)``: the same real
    values, since ``Quant(Q, 1) = Q`` and ``Quant(B s_x, s_x) s_w = B s_x s_w``: rounding
    ``B s_x`` to float32 and dividing by ``s_x`` gives back ``B`` while ``|B| < 2^23``, which
    the certificate ensures (``|B| <= 2^(n_accum_bits - 1)``) for ``n_accum_bits <= 24``.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    gemms = [node for node in graph.node if node.op_type == "Gemm"]
    for layer, (gemm, (weight_codes, bias_codes)) in enumerate(zip(gemms, codes, strict=True)):
        input_quant, weight_quant, bias_quant = (producers[name] for name in gemm.input)
        input_scale = numpy_helper.to_array(values[input_quant.input[1]])
        weight_scale = numpy_helper.to_array(values[weight_quant.input[1]]).reshape(-1)
        names = {key: f"fc{layer}.scale_after_gemm.{key}" for key in ("codes", "one", "bias")}
        names["scale"] = f"fc{layer}.scale_after_gemm.weight_scale"
        graph.initializer.extend(
            [
                numpy_helper.from_array(weight_codes.astype(np.float32), names["codes"]),
                numpy_helper.from_array(np.array(1.0, dtype=np.float32), names["one"]),
                numpy_helper.from_array(
                    (bias_codes * input_scale).astype(np.float32), names["bias"]
                ),
                numpy_helper.from_array(weight_scale.astype(np.float32), names["scale"]),
            ]
        )
        weight_quant.input[0], weight_quant.input[1] = names["codes"], names["one"]
        bias_quant.input[0], bias_quant.input[1] = names["bias"], input_quant.input[1]
        output = gemm.output[0]
        gemm.output[0] = f"fc{layer}.scale_after_gemm.accumulator"
        mul = helper.make_node(
            "Mul", [gemm.output[0], names["scale"]], [output], name=f"fc{layer}.weight_scale"
        )
        graph.node.insert(list(graph.node).index(gemm) + 1, mul)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
