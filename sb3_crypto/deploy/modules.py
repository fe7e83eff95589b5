"""ONNX export of trained policies, with parity checks against PyTorch and optional int8 quantisation.

``python -m sb3_crypto.export --model PATH --out FILE.onnx`` exports the deterministic policy of a
saved model (reference system S1 ships its agent as ONNX; S0 quantises for inference):

==========================  =======================================  =====================================
algorithm                   inputs                                   outputs
==========================  =======================================  =====================================
DQN, Rainbow, D3QN          ``obs``                                  ``action``, ``q_values``
                                                                     (+ ``distribution`` with C51)
QR-DQN                      ``obs``                                  ``action``, ``q_values``, ``quantiles``
SAC, TD3                    ``obs``                                  ``action`` (in the env's bounds)
PPO, A2C                    ``obs``                                  ``action``, ``value``
MaskablePPO                 ``obs``, ``action_masks`` (bool)         ``action``, ``value``
RecurrentPPO                ``obs``, ``state_h``, ``state_c``,       ``action``, ``next_state_h``,
                            ``episode_start``                        ``next_state_c``
==========================  =======================================  =====================================

Every input and output has a dynamic batch dimension (for RecurrentPPO the state is
``(lstm_layers, batch, hidden)`` as in SB3). The file carries a JSON description of the model
(algorithm, env id, observation layout and bounds, action space and meanings, package version) in
its metadata under ``sb3_crypto``, which :class:`sb3_crypto.predictor.Predictor` reads.

The export is checked before the command succeeds: on observations recorded by running the policy in
its environment, onnxruntime must give the same greedy actions as the PyTorch policy (SB3's own
``predict``) and values within ``1e-5``. ``--quantize`` also writes an int8 dynamically-quantised
copy of the linear layers and reports its action agreement rate and speed-up.
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel
from torch import nn

METADATA_KEY = "sb3_crypto"
ATOL = 1e-5


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


# ----------------------------------------------------------------------------------------------
# Export modules: the deterministic policy of each algorithm family as a plain nn.Module.
# ----------------------------------------------------------------------------------------------


class _QValues(nn.Module):
    """DQN / Rainbow / D3QN: Q-values, the greedy action and (C51) the return distribution."""

    def __init__(self, q_net: nn.Module) -> None:
        super().__init__()
        self.q_net = q_net
        self.categorical = bool(getattr(q_net, "categorical", False))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, ...]:
        if not self.categorical:
            q_values = self.q_net(obs)
            return q_values.argmax(dim=1), q_values
        distribution = th.softmax(self.q_net.logits(obs), dim=2)
        q_values = (distribution * self.q_net.support).sum(dim=2)
        return q_values.argmax(dim=1), q_values, distribution


class _Quantiles(nn.Module):
    """QR-DQN: quantiles ``(batch, n_quantiles, n_actions)``, their mean and its argmax."""

    def __init__(self, quantile_net: nn.Module) -> None:
        super().__init__()
        self.quantile_net = quantile_net

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        quantiles = self.quantile_net(obs)
        q_values = quantiles.mean(dim=1)
        return q_values.argmax(dim=1), q_values, quantiles


class _ActionScaling(nn.Module):
    """Maps policy outputs to the env's action bounds as SB3's ``predict`` does."""

    def __init__(self, action_space: spaces.Box, squashed: bool) -> None:
        super().__init__()
        self.squashed = squashed
        self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))

    def forward(self, action: th.Tensor) -> th.Tensor:
        if self.squashed:  # unscale_action: [-1, 1] -> [low, high]
            return self.low + 0.5 * (action + 1.0) * (self.high - self.low)
        return th.clamp(action, self.low, self.high)


class _Deterministic(nn.Module):
    """SAC / TD3: the deterministic action in the env's bounds."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.actor = policy.actor
        self.scaling = _ActionScaling(policy.action_space, squashed=bool(policy.squash_output))
        self.has_dist_params = hasattr(self.actor, "get_action_dist_params")

    def forward(self, obs: th.Tensor) -> th.Tensor:
        if self.has_dist_params:  # SAC (with or without gSDE): the mode is tanh(mean)
            mean, _, _ = self.actor.get_action_dist_params(obs)
            action = th.tanh(mean)
        else:  # TD3
            action = self.actor(obs)
        return self.scaling(action)


def _discrete_or_box(policy: nn.Module, latent_pi: th.Tensor, mask: th.Tensor | None = None) -> th.Tensor:
    """The mode of the action distribution from the actor's latent."""
    out = policy.action_net(latent_pi)
    if isinstance(policy.action_space, spaces.Discrete):
        if mask is not None:  # MaskableCategorical: invalid logits -> -1e8
            out = th.where(mask, out, th.full_like(out, -1e8))
        return out.argmax(dim=1)
    if isinstance(policy.action_space, spaces.Box):
        return out
    raise TypeError(f"export supports Discrete and Box action spaces, not {policy.action_space}")


class _ActorCritic(nn.Module):
    """PPO / A2C / MaskablePPO: deterministic action and state value."""

    def __init__(self, policy: nn.Module, masked: bool) -> None:
        super().__init__()
        self.policy = policy
        self.masked = masked
        box = isinstance(policy.action_space, spaces.Box)
        self.scaling = _ActionScaling(policy.action_space, bool(policy.squash_output)) if box else None

    def forward(self, obs: th.Tensor, action_masks: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        policy = self.policy
        features = policy.extract_features(obs)
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(features)
        else:
            latent_pi = policy.mlp_extractor.forward_actor(features[0])
            latent_vf = policy.mlp_extractor.forward_critic(features[1])
        action = _discrete_or_box(policy, latent_pi, action_masks if self.masked else None)
        if self.scaling is not None:
            action = self.scaling(action)
        return action, policy.value_net(latent_vf)


class _Recurrent(nn.Module):
    """RecurrentPPO: one step of the actor LSTM; the state is reset where ``episode_start`` is 1."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        box = isinstance(policy.action_space, spaces.Box)
        self.scaling = _ActionScaling(policy.action_space, bool(policy.squash_output)) if box else None

    def forward(
        self, obs: th.Tensor, state_h: th.Tensor, state_c: th.Tensor, episode_start: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        policy = self.policy
        features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
        keep = (1.0 - episode_start).view(1, -1, 1)
        out, (state_h, state_c) = policy.lstm_actor(features.unsqueeze(0), (keep * state_h, keep * state_c))
        latent_pi = policy.mlp_extractor.forward_actor(out[0])
        action = _discrete_or_box(policy, latent_pi)
        if self.scaling is not None:
            action = self.scaling(action)
        return action, state_h, state_c


@dataclass
class ExportSignature:
    """Names of an exported graph's inputs and outputs and the family it belongs to."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def export_module(model: Any) -> tuple[nn.Module, ExportSignature]:
    """The deterministic policy of ``model`` as an ``nn.Module`` (eval mode, noise off) and its signature."""
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy

    policy = model.policy
    if not isinstance(model.observation_space, spaces.Box):
        raise TypeError(f"export supports Box observation spaces (every sb3_crypto env), not {model.observation_space}")
    policy.set_training_mode(False)
    q_net = getattr(policy, "q_net", None)
    if q_net is not None:
        if hasattr(q_net, "set_noise"):
            q_net.set_noise(False)  # deterministic prediction uses the mean weights
        module: nn.Module = _QValues(q_net)
        outputs = ("action", "q_values", "distribution") if module.categorical else ("action", "q_values")
        signature = ExportSignature("q_values", ("obs",), outputs)
    elif hasattr(policy, "quantile_net"):
        module = _Quantiles(policy.quantile_net)
        signature = ExportSignature("quantiles", ("obs",), ("action", "q_values", "quantiles"))
    elif hasattr(policy, "actor") and not isinstance(policy, ActorCriticPolicy):
        module = _Deterministic(policy)
        signature = ExportSignature("deterministic", ("obs",), ("action",))
    elif isinstance(policy, RecurrentActorCriticPolicy):
        module = _Recurrent(policy)
        signature = ExportSignature(
            "recurrent", ("obs", "state_h", "state_c", "episode_start"), ("action", "next_state_h", "next_state_c")
        )
    elif isinstance(policy, MaskableActorCriticPolicy):
        module = _ActorCritic(policy, masked=True)
        signature = ExportSignature("masked_actor_critic", ("obs", "action_masks"), ("action", "value"))
    elif isinstance(policy, ActorCriticPolicy):
        module = _ActorCritic(policy, masked=False)
        signature = ExportSignature("actor_critic", ("obs",), ("action", "value"))
    else:
        raise TypeError(f"no ONNX export for policy {type(policy).__name__}")
    return module.eval(), signature


def example_inputs(model: Any, signature: ExportSignature, batch: int = 2) -> tuple[th.Tensor, ...]:
    """Zero inputs of the right shapes and dtypes for ``batch`` observations."""
    obs = th.zeros((batch, *model.observation_space.shape), dtype=th.float32)
    if signature.kind == "recurrent":
        layers, _, hidden = model.policy.lstm_hidden_state_shape
        state = th.zeros((layers, batch, hidden), dtype=th.float32)
        return obs, state, state.clone(), th.zeros(batch, dtype=th.float32)
    if signature.kind == "masked_actor_critic":
        return obs, th.ones((batch, int(model.action_space.n)), dtype=th.bool)
    return (obs,)


# ----------------------------------------------------------------------------------------------
# Model description (ONNX metadata, /model/info)
# ----------------------------------------------------------------------------------------------


def algorithm_name(model: Any) -> str:
    """RL Zoo's name of the model's algorithm (``dqn``, ``rainbow``, ``ppo_lstm``, ...)."""
    from sb3_crypto.zoo import ALGOS, install

    install()
    matches = [name for name, cls in ALGOS.items() if type(model) is cls]
    return matches[0] if matches else type(model).__name__.lower()


def action_meanings(env_id: str | None, action_space: spaces.Space) -> list[str] | None:
    """What each action (Discrete) or action dimension (Box) means, when the env declares it."""
    import gymnasium as gym

    if env_id is None or env_id not in gym.envs.registry:
        return None
    entry_point = gym.envs.registry[env_id].entry_point
    if not isinstance(entry_point, str):
        return None
    try:
        env_class = gym.envs.registration.load_env_creator(entry_point)
    except (ImportError, AttributeError):
        return None
    meanings = getattr(env_class, "action_meanings", None)
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


def describe_model(model: Any, env_id: str | None = None, signature: ExportSignature | None = None) -> dict[str, Any]:
    """What a client needs to know: algorithm, env, observation layout, actions, inputs and outputs."""
    from sb3_crypto.version import __version__

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
    }
    if signature.kind == "recurrent":
        info["lstm_state_shape"] = list(model.policy.lstm_hidden_state_shape)
    return info


# ----------------------------------------------------------------------------------------------
# Export, parity, quantisation
# ----------------------------------------------------------------------------------------------


def export_onnx(model: Any, out: str | Path, env_id: str | None = None, opset: int = 18) -> dict[str, Any]:
    """Write ``model``'s deterministic policy to ``out`` (ONNX, dynamic batch); returns its description."""
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
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
    info = describe_model(model, env_id, signature)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return info


def run_module(
    module: nn.Module, signature: ExportSignature, inputs: dict[str, np.ndarray], device: th.device | str = "cpu"
) -> dict[str, np.ndarray]:
    """An export module's named outputs for named numpy inputs, computed by PyTorch."""
    tensors = [th.as_tensor(inputs[name], device=device) for name in signature.inputs]
    with th.no_grad():
        result = module(*tensors)
    result = result if isinstance(result, tuple) else (result,)
    return {name: value.cpu().numpy() for name, value in zip(signature.outputs, result)}


def torch_outputs(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The export module's outputs computed by PyTorch (the reference of the parity check)."""
    module, signature = export_module(model)
    return run_module(module, signature, inputs, model.device)


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


def onnx_session(path: str | Path) -> Any:
    """An onnxruntime session on the CPU with one thread (as the package's torch default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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


def quantize(onnx_path: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantisation of the linear layers (MatMul / Gemm weights), as S0 does for inference."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    source = onnx.load(str(onnx_path))
    # The exporter's recorded intermediate shapes trip the quantiser's shape inference; let it infer afresh.
    stripped = onnx.ModelProto()
    stripped.CopyFrom(source)
    del stripped.graph.value_info[:]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = Path(tmp) / "model.onnx"
        onnx.save(stripped, str(plain))
        quantize_dynamic(str(plain), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    target = onnx.load(str(out))
    if not any(p.key == METADATA_KEY for p in target.metadata_props):  # keep the model description
        for prop in source.metadata_props:
            target.metadata_props.add().CopyFrom(prop)
        onnx.save(target, str(out))
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


# ----------------------------------------------------------------------------------------------
# Recording observations and the command line
# ----------------------------------------------------------------------------------------------


def record_observations(
    model: Any, make_env: Callable[[], Any], n: int = 512, seed: int = 0, stochastic_every: int = 4
) -> np.ndarray:
    """``n`` observations met by running the policy in its env (every ``stochastic_every``-th action
    sampled so the record also covers states the greedy policy would not reach)."""
    env = make_env()
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    recorded = []
    state, start = None, np.array([True])
    masked = hasattr(env.unwrapped, "action_masks") and "action_masks" in inspect.signature(model.predict).parameters
    while len(recorded) < n:
        recorded.append(np.asarray(obs, dtype=np.float32))
        extra = {}
        if masked:
            extra["action_masks"] = env.unwrapped.action_masks()
        if "Recurrent" in type(model).__name__:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
        elif rng.random() < 1.0 / stochastic_every:
            action = env.action_space.sample()
            if masked:
                action = int(rng.choice(np.flatnonzero(extra["action_masks"])))
        else:
            action, _ = model.predict(obs, deterministic=True, **extra)
        obs, _, terminated, truncated, _ = env.step(action)
        start = np.array([terminated or truncated])
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(recorded)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: export, check parity, optionally quantise; writes ``OUT`` and ``OUT.json``."""
    import gymnasium as gym
    from rl_zoo3.utils import StoreDict

    import sb3_crypto
    from sb3_crypto.backtest import load_model, saved_env_kwargs
    from sb3_crypto.predictor import infer_env_id, refuse_vecnormalize
    from sb3_crypto.utils import configure_threads

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="saved SB3 model (.zip)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--algo", default=None, help="algorithm (default: read from the RL Zoo path or the file)")
    parser.add_argument("--env", default=None, help="env id (default: from the RL Zoo path)")
    parser.add_argument(
        "--env-kwargs",
        type=str,
        nargs="+",
        action=StoreDict,
        default={},
        help="env keyword arguments as RL Zoo takes them (key:value ...), over the run's config.yml",
    )
    parser.add_argument("--n-obs", type=int, default=512, help="recorded observations for the parity check")
    parser.add_argument("--quantize", action="store_true", help="also write an int8 copy (OUT with .int8.onnx)")
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args(argv)
    configure_threads()
    model_path = Path(args.model)
    refuse_vecnormalize(model_path)
    model = load_model(model_path, args.algo)
    env_id = args.env or infer_env_id(model_path)
    out = Path(args.out)
    info = export_onnx(model, out, env_id=env_id, opset=args.opset)
    if env_id is not None:
        kwargs = {**saved_env_kwargs(model_path), **args.env_kwargs, "split": "validation"}
        shape = gym.make(env_id, **kwargs).observation_space.shape
        if shape != model.observation_space.shape:
            raise SystemExit(
                f"{env_id} made with {kwargs} has observations of shape {shape}, the model expects "
                f"{model.observation_space.shape}; pass the training env's settings with --env-kwargs"
            )
        observations = record_observations(model, lambda: gym.make(env_id, **kwargs), n=args.n_obs)
        source = f"{env_id} (validation split)" if env_id in sb3_crypto.ENV_IDS else env_id
    else:
        space = model.observation_space
        observations = np.stack([space.sample() for _ in range(args.n_obs)]).astype(np.float32)
        source = "samples of the observation space (no env id known)"
    report = check_parity(model, out, observations)
    if args.quantize:
        int8 = quantize(out, out.with_suffix(".int8.onnx"))
        report.quantized = {"path": str(int8), **quantization_report(model, out, int8, observations)}
    summary = {"model": str(model_path), "onnx": str(out), "observations": source, "info": info, **report.to_dict()}
    Path(f"{out}.json").write_text(json.dumps(summary, indent=2))
    print(f"exported {info['algorithm']} ({info['kind']}) to {out}: inputs {info['inputs']}, outputs {info['outputs']}")
    print(
        f"parity on {report.n_observations} recorded observations: actions identical={report.actions_identical} "
        f"(SB3 predict: {report.sb3_actions_identical}), max |diff| "
        + ", ".join(f"{k}={v:.2e}" for k, v in report.max_abs_diff.items())
    )
    if report.quantized:
        q = report.quantized
        print(
            f"int8: {q['path']}, action agreement {100 * q['action_agreement']:.1f}%, speed-up "
            f"{q['speedup_single']:.2f}x (single) / {q['speedup_batch']:.2f}x (batch), "
            f"{q['size_bytes']['int8'] / 1024:.0f} KiB vs {q['size_bytes']['fp32'] / 1024:.0f} KiB"
        )
    if not report.ok:
        raise SystemExit(f"parity check failed: {json.dumps(report.to_dict())}")
    return summary


if __name__ == "__main__":
    main()
