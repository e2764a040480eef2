"""QONNX export of the quantized network through Brevitas (opset 14)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

QONNX_DOMAIN = "qonnx.custom_op.general"
# The domain Concrete ML's importer (compile_onnx_model(..., import_qat=True)) reads.
BREVITAS_DOMAIN = "onnx.brevitas"
OPSET_VERSION = 14


def export_onnx(module, path, input_dim: int, qonnx_domain: bool = False):
    """Write ``module`` (a permanent-pruned SparseQuantNeuralNetwork) as QONNX to ``path``.

    The graph uses opset 14; weights are initializers and not graph inputs; ``Quant``
    nodes and their opset import use the domain ``onnx.brevitas`` unless
    ``qonnx_domain`` asks for ``qonnx.custom_op.general``. The model passes
    ``onnx.checker``.

    Returns
    -------
    onnx.ModelProto
        The model written to ``path``.

    Raises
    ------
    ImportError
        If the ``onnx`` extra is not installed.
    """
    try:
        import onnx
        import torch
        from brevitas.export import export_qonnx
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"QONNX export needs the onnx extra: pip install 'concrete-qnn[onnx]' ({error})"
        ) from None
    path = Path(path)
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            export_qonnx(
                module,
                input_t=torch.zeros(1, input_dim, device=device),
                export_path=str(path),
                opset_version=OPSET_VERSION,
            )
    finally:
        module.train(was_training)
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    del graph.input[:]
    graph.input.extend(inputs)
    if not qonnx_domain:
        for node in graph.node:
            if node.domain == QONNX_DOMAIN:
                node.domain = BREVITAS_DOMAIN
        imports = [op for op in model.opset_import if op.domain != QONNX_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(imports)
        model.opset_import.append(onnx.helper.make_opsetid(BREVITAS_DOMAIN, 1))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model
