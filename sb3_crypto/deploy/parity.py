"""The parity check of an export: onnxruntime against PyTorch (the export module and SB3's own
``predict``) on observations recorded by running the policy in its env."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sb3_crypto.deploy.modules import export_module, torch_outputs
from sb3_crypto.deploy.onnx import onnx_session
from sb3_crypto.evaluation.rollout import rollout

#: Largest absolute difference of values accepted between onnxruntime and PyTorch.
ATOL = 1e-5


@dataclass
class ParityReport:
    """Outcome of comparing onnxruntime with PyTorch on recorded observations."""

    n_observations: int
    actions_identical: bool
    max_abs_diff: dict[str, float]
    sb3_actions_identical: bool
    quantized: dict[str, Any] | None = field(default=None)

    @property
    def ok(self) -> bool:
        """Identical actions (against both the export module and SB3's ``predict``) and values within ``1e-5``."""
        return (
            self.actions_identical and self.sb3_actions_identical and all(v <= ATOL for v in self.max_abs_diff.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly report."""
        return {**asdict(self), "ok": self.ok, "atol": ATOL}


def model_inputs(model: Any, observations: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Inputs for a batch of recorded observations: random valid masks, random states, some episode starts."""
    rng = rng or np.random.default_rng(0)
    _, signature = export_module(model)
    obs = np.asarray(observations, dtype=np.float32)
    n = len(obs)
    inputs: dict[str, np.ndarray] = {"obs": obs}
    if signature.kind == "masked_actor_critic":
        masks = rng.random((n, int(model.action_space.n))) < 0.7
        masks[np.arange(n), rng.integers(0, masks.shape[1], n)] = True  # at least one valid action
        inputs["action_masks"] = masks
    if signature.kind == "recurrent":
        layers, _, hidden = model.policy.lstm_hidden_state_shape
        inputs["state_h"] = rng.normal(0, 0.5, (layers, n, hidden)).astype(np.float32)
        inputs["state_c"] = rng.normal(0, 0.5, (layers, n, hidden)).astype(np.float32)
        inputs["episode_start"] = (rng.random(n) < 0.2).astype(np.float32)
    return inputs


def sb3_actions(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Actions from SB3's own ``predict(deterministic=True)`` for the same inputs."""
    extra: dict[str, Any] = {}
    if "action_masks" in inputs:
        extra["action_masks"] = inputs["action_masks"]
    if "state_h" in inputs:
        extra["state"] = (inputs["state_h"], inputs["state_c"])
        extra["episode_start"] = inputs["episode_start"]
    q_net = getattr(model.policy, "q_net", None)
    if q_net is not None and hasattr(q_net, "set_noise"):
        q_net.set_noise(True)  # as after training: predict() must switch the noise off by itself
    actions, _ = model.predict(inputs["obs"], deterministic=True, **extra)
    return np.asarray(actions)


def check_parity(model: Any, onnx_path: str | Path, observations: np.ndarray) -> ParityReport:
    """Compare onnxruntime with PyTorch (the export module and SB3's ``predict``) on ``observations``."""
    inputs = model_inputs(model, observations)
    expected = torch_outputs(model, inputs)
    session = onnx_session(onnx_path)
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    diffs = {
        name: float(np.max(np.abs(got[name].astype(np.float64) - value.astype(np.float64))))
        for name, value in expected.items()
        if name != "action" or value.dtype.kind == "f"
    }
    discrete = expected["action"].dtype.kind in "iu"
    identical = bool(np.array_equal(got["action"], expected["action"])) if discrete else True
    reference = sb3_actions(model, inputs)
    if discrete:
        sb3_identical = bool(np.array_equal(reference.reshape(-1), got["action"].reshape(-1)))
    else:
        sb3_identical = bool(np.max(np.abs(reference.reshape(got["action"].shape) - got["action"])) <= ATOL)
    return ParityReport(len(inputs["obs"]), identical, diffs, sb3_identical)


def record_observations(
    model: Any, make_env: Callable[[], Any], n: int = 512, seed: int = 0, stochastic_every: int = 4
) -> np.ndarray:
    """``n`` observations met by running the policy in its env (every ``stochastic_every``-th action
    sampled so the record also covers states the greedy policy would not reach)."""
    env = make_env()
    rng = np.random.default_rng(seed)
    state: Any = None
    masked = hasattr(env.unwrapped, "action_masks") and "action_masks" in inspect.signature(model.predict).parameters
    recurrent = "Recurrent" in type(model).__name__

    def act(obs: np.ndarray, episode_start: bool) -> Any:
        nonlocal state
        extra = {}
        if masked:
            extra["action_masks"] = env.unwrapped.action_masks()
        if recurrent:
            action, state = model.predict(obs, state=state, episode_start=np.array([episode_start]), deterministic=True)
        elif rng.random() < 1.0 / stochastic_every:
            action = env.action_space.sample()
            if masked:
                action = int(rng.choice(np.flatnonzero(extra["action_masks"])))
        else:
            action, _ = model.predict(obs, deterministic=True, **extra)
        return action

    episodes = rollout(env, act, episodes=None, max_steps=n, seed=seed, record_observations=True)
    env.close()
    return np.stack([np.asarray(obs, dtype=np.float32) for episode in episodes for obs in episode.observations])
