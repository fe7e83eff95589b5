"""What a client needs to know about a model: algorithm, env, observation layout, actions, inputs and
outputs, and the observation spec that builds its observations from raw bars (when the model has
one). It travels in the ONNX metadata (under :data:`METADATA_KEY`) and answers ``/model/info``."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from sb3_crypto.algorithms import algorithm_name as registry_name
from sb3_crypto.deploy.modules import ExportSignature, export_module
from sb3_crypto.envs.registration import env_class
from sb3_crypto.version import __version__

#: Key of the model description in an ONNX file's metadata.
METADATA_KEY = "sb3_crypto"


def algorithm_name(model: Any) -> str:
    """RL Zoo's name of the model's algorithm (``dqn``, ``rainbow``, ``ppo_lstm``, ...)."""
    return registry_name(model)


def action_meanings(env_id: str | None, action_space: spaces.Space) -> list[str] | None:
    """What each action (Discrete) or action dimension (Box) means, when the env declares it."""
    cls = env_class(env_id) if env_id is not None else None
    if cls is None:
        return None
    meanings = getattr(cls, "action_meanings", None)
    if isinstance(meanings, dict):
        size = int(action_space.n) if isinstance(action_space, spaces.Discrete) else int(action_space.shape[0])
        meanings = meanings.get(size)
    return list(meanings) if meanings else None


def describe_space(space: spaces.Space) -> dict[str, Any]:
    """A JSON-friendly description of a Box or Discrete space."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):
        low, high = space.low.reshape(-1), space.high.reshape(-1)
        uniform = bool(np.all(low == low[0]) and np.all(high == high[0]))
        bounds = (
            {"low": float(low[0]), "high": float(high[0])} if uniform else {"low": low.tolist(), "high": high.tolist()}
        )
        return {"type": "Box", "shape": list(space.shape), **bounds}
    return {"type": type(space).__name__}


def describe_model(
    model: Any,
    env_id: str | None = None,
    signature: ExportSignature | None = None,
    observation_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a client needs to know: algorithm, env, observation layout, actions, inputs and outputs, and
    the model's observation spec (``None`` without one: then only raw observations can be served)."""
    signature = signature or export_module(model)[1]
    layout = getattr(model.observation_space, "layout", None)
    info: dict[str, Any] = {
        "algorithm": algorithm_name(model),
        "env_id": env_id,
        "observation_space": describe_space(model.observation_space),
        "observation_layout": layout.to_dict() if layout is not None else None,
        "action_space": describe_space(model.action_space),
        "action_meanings": action_meanings(env_id, model.action_space),
        "kind": signature.kind,
        "inputs": list(signature.inputs),
        "outputs": list(signature.outputs),
        "package_version": __version__,
        "observation_spec": observation_spec,
    }
    if signature.kind == "recurrent":
        info["lstm_state_shape"] = list(model.policy.lstm_hidden_state_shape)
    return info
