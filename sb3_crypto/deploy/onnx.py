"""Writing the ONNX file: the export module traced by torch's exporter, with the model description in
its metadata, and the onnxruntime session that runs it."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch as th

from sb3_crypto.deploy.model_info import METADATA_KEY, describe_model
from sb3_crypto.deploy.modules import example_inputs, export_module
from sb3_crypto.files import atomic_path


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            f"ONNX export needs onnx, onnxscript and onnxruntime ({error}); install them with "
            "`pip install 'sb3_crypto[serve]'`"
        ) from error


def export_onnx(
    model: Any,
    out: str | Path,
    env_id: str | None = None,
    opset: int = 18,
    observation_spec: dict[str, Any] | None = None,
    extra_metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``model``'s deterministic policy to ``out`` (ONNX, dynamic batch; written atomically, so a
    failed export leaves a previous file as it was); returns its description.

    :param observation_spec: the model's observation spec (from its zip,
        :func:`~sb3_crypto.algorithms.model_io.load_observation_spec`), embedded in the metadata so that
        the ONNX file can act on raw bars too (``Predictor.act``, ``POST /act``).
    :param extra_metadata: more metadata entries (key -> string), e.g. the audit's verdict
        (:func:`sb3_crypto.deploy.audit_info.audit_metadata`).
    """
    _require_onnx()
    import onnx

    module, signature = export_module(model)
    inputs = example_inputs(model, signature)
    batch = th.export.Dim("batch", min=1, max=1 << 20)
    dims = {
        "obs": {0: batch},
        "state_h": {1: batch},
        "state_c": {1: batch},
        "episode_start": {0: batch},
        "action_masks": {0: batch},
    }
    dynamic_shapes = tuple(dims[name] for name in signature.inputs)
    with warnings.catch_warnings(), th.no_grad():
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        program = th.onnx.export(
            module,
            inputs,
            dynamo=True,
            input_names=list(signature.inputs),
            output_names=list(signature.outputs),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            verbose=False,
            external_data=False,
        )
    proto = program.model_proto
    info = describe_model(model, env_id, signature, observation_spec)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info)
    for key, value in (extra_metadata or {}).items():
        if key == METADATA_KEY or not isinstance(value, str):
            raise ValueError(f"extra metadata {key!r} must be a string under another key than {METADATA_KEY!r}")
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    with atomic_path(Path(out)) as temporary:
        onnx.save(proto, str(temporary))
    return info


def onnx_session(path: str | Path) -> Any:
    """An onnxruntime session on the CPU with one thread (as the package's torch default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
