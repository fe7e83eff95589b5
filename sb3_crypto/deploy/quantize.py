"""Dynamic int8 quantisation of an exported model (as S0 does for inference) and its report: action
agreement with the float model, value error, size and speed-up."""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sb3_crypto.deploy.model_info import METADATA_KEY
from sb3_crypto.deploy.onnx import onnx_session
from sb3_crypto.deploy.parity import model_inputs
from sb3_crypto.files import atomic_path


def quantize(onnx_path: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantisation of the linear layers (MatMul / Gemm weights), as S0 does for inference;
    ``out`` is written atomically."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    source = onnx.load(str(onnx_path))
    # The exporter's recorded intermediate shapes trip the quantiser's shape inference; let it infer afresh.
    stripped = onnx.ModelProto()
    stripped.CopyFrom(source)
    del stripped.graph.value_info[:]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), atomic_path(out) as temporary:
        warnings.simplefilter("ignore")
        plain = Path(tmp) / "model.onnx"
        onnx.save(stripped, str(plain))
        quantize_dynamic(
            str(plain), str(temporary), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )
        target = onnx.load(str(temporary))
        if not any(p.key == METADATA_KEY for p in target.metadata_props):  # keep the model description
            for prop in source.metadata_props:
                target.metadata_props.add().CopyFrom(prop)
            onnx.save(target, str(temporary))
    return out


def _time_session(session: Any, feed: dict[str, np.ndarray], repeats: int) -> float:
    session.run(None, feed)
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, feed)
    return (time.perf_counter() - start) / repeats


def quantization_report(
    model: Any, fp32_path: str | Path, int8_path: str | Path, observations: np.ndarray, repeats: int = 200
) -> dict[str, Any]:
    """Action agreement of the int8 model with the float model, value error and speed-up (single observation
    and full batch, one thread)."""
    inputs = model_inputs(model, observations)
    fp32, int8 = onnx_session(fp32_path), onnx_session(int8_path)
    feed = {i.name: inputs[i.name] for i in fp32.get_inputs()}
    a, b = fp32.run(None, feed), int8.run(None, feed)
    names = [o.name for o in fp32.get_outputs()]
    if a[0].dtype.kind in "iu":
        agreement = float(np.mean(a[0] == b[0]))
    else:
        agreement = float(np.mean(np.all(np.abs(a[0] - b[0]) <= 0.05 * (1 + np.abs(a[0])), axis=-1)))
    one = {k: v[:, :1] if k in ("state_h", "state_c") else v[:1] for k, v in feed.items()}
    report: dict[str, Any] = {
        "action_agreement": agreement,
        "max_abs_value_diff": {
            name: float(np.max(np.abs(x - y))) for name, x, y in zip(names, a, b) if x.dtype.kind == "f"
        },
        "size_bytes": {"fp32": Path(fp32_path).stat().st_size, "int8": Path(int8_path).stat().st_size},
    }
    for label, batch_feed in (("single", one), ("batch", feed)):
        t32, t8 = _time_session(fp32, batch_feed, repeats), _time_session(int8, batch_feed, repeats)
        report[f"speedup_{label}"] = t32 / t8
        report[f"latency_us_{label}"] = {"fp32": 1e6 * t32, "int8": 1e6 * t8}
    return report
