"""The ONNX form of ``bench export``: the same ``torch.export`` program, translated by ``torch.onnx``.

Its packages come with the extra: ``pip install 'modbench[onnx]'``.

The graph takes ``images``, float (batch, 3, 32, 32) in [0, 1], and returns ``logits`` over the
task's classes; the batch axis is dynamic and named ``batch``. onnxruntime runs it:
``onnxruntime.InferenceSession("module.onnx").run(None, {"images": x})``.
"""

from __future__ import annotations

import contextlib
import importlib
import io

import torch

from bench.errors import UsageError

NEEDED = ("onnx", "onnxscript")  # torch.onnx's exporter imports both


def require_onnx() -> None:
    """A one-line UsageError naming the extra when the ONNX exporter's packages are missing."""
    for name in NEEDED:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UsageError(f"ONNX export needs the package '{name}': pip install 'modbench[onnx]'") from None


def onnx_bytes(program: torch.export.ExportedProgram) -> bytes:
    """``program`` as a serialized ONNX model with input ``images``, output ``logits`` and a ``batch`` axis."""
    require_onnx()
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, input_names=["images"],
                                         output_names=["logits"])
    batch = onnx_program.model.graph.inputs[0].shape[0]
    if not isinstance(batch, int):
        onnx_program.rename_axes({batch: "batch"})
    return onnx_program.model_proto.SerializeToString()
