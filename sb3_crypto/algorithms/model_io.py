"""Model files: load a saved model, infer its algorithm and env id, read the run's env settings.

Every command (backtest, export, serve, the predictor) reads model files through this module. An
RL Zoo run folder looks like ``logs/<algo>/<env>_<n>/<env>.zip`` with ``<env>/config.yml`` (the
hyper-parameters and ``env_kwargs``) and, when observations were normalised, ``vecnormalize.pkl``.
"""

from __future__ import annotations

import base64
import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sb3_crypto.algorithms import ALGORITHMS, algorithm_for_policy

_RUN_FOLDER = re.compile(r"^(?P<env>.+)_\d+$")


def model_file(path: str | Path) -> Path:
    """``path`` as an existing model file (``.zip`` added when it was left out, as SB3 does)."""
    path = Path(path)
    if path.is_file():
        return path
    with_zip = path.with_name(path.name + ".zip")
    if path.suffix != ".zip" and with_zip.is_file():
        return with_zip
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder, not a model file (give the .zip inside it)")
    raise FileNotFoundError(f"no model file at {path}")


def run_config(model_path: str | Path) -> Path | None:
    """The RL Zoo ``config.yml`` of the run a model file belongs to (``<run>/<env>/config.yml`` or
    one beside the model), or ``None``."""
    model_path = Path(model_path)
    for folder in (model_path.parent / model_path.stem, model_path.parent):
        config = folder / "config.yml"
        if config.is_file():
            return config
    match = _RUN_FOLDER.match(model_path.parent.name)  # best_model.zip of logs/<algo>/<env>_<n>/
    if match and (model_path.parent / match.group("env") / "config.yml").is_file():
        return model_path.parent / match.group("env") / "config.yml"
    return None


def saved_env_kwargs(model_path: str | Path) -> dict[str, Any]:
    """``env_kwargs`` from an RL Zoo run folder's ``config.yml`` next to the model, if there is one."""
    import yaml

    config = run_config(model_path)
    if config is None:
        return {}
    with open(config) as handle:
        # RL Zoo writes an OrderedDict as a list of pairs.
        loaded = yaml.load(handle, Loader=yaml.UnsafeLoader)
    entries = dict(loaded) if loaded else {}
    kwargs = entries.get("env_kwargs") or {}
    return dict(kwargs)


def settings_source(model_path: str | Path) -> str:
    """Where the env settings of ``model_path`` come from, for messages."""
    config = run_config(model_path)
    if config is None:
        return f"no config.yml beside {Path(model_path).name}, so the env's defaults"
    return f"env_kwargs of {config}"


class ModelEnvMismatch(ValueError):
    """A model whose observation (or action) space differs from the env's it is asked to act in."""


def _kind(space: Any) -> type:
    """The Gymnasium space class of ``space`` (``Box`` for the package's ``LayoutBox``, which models
    saved before it existed do not have)."""
    for cls in type(space).__mro__:
        if cls.__module__.startswith("gymnasium.spaces"):
            return cls
    return type(space)


def describe_space(space: Any) -> str:
    """A short description of a Gymnasium space (type, shape, dtype; not every bound)."""
    name = _kind(space).__name__
    if hasattr(space, "n"):
        return f"{name}({int(space.n)})"
    shape = getattr(space, "shape", None)
    if shape is not None:
        return f"{name}(shape={tuple(shape)}, dtype={space.dtype})"
    return repr(space)[:200]


def _fits(a: Any, b: Any) -> bool:
    """Same kind of space, same shape, same number of actions (bounds are not compared)."""
    same_n = getattr(a, "n", None) == getattr(b, "n", None)
    return _kind(a) is _kind(b) and getattr(a, "shape", None) == getattr(b, "shape", None) and same_n


def check_model_fits_env(
    model: Any,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    source: str = "",
    hint: str = "the run's config.yml next to the model",
) -> None:
    """Raise :class:`ModelEnvMismatch` naming both spaces (and where the env's settings came from)
    when ``model`` cannot act in ``env_id`` made with ``env_kwargs``: a model of another env, or one
    copied away from its run's ``config.yml`` so that the env is made with other settings.

    :param source: where ``env_kwargs`` came from (see :func:`settings_source`).
    :param hint: how the caller can pass the training env's settings.
    """
    import gymnasium as gym

    env = gym.make(env_id, **env_kwargs)
    try:
        spaces = {"observations": (model.observation_space, env.observation_space)}
        spaces["actions"] = (model.action_space, env.action_space)
    finally:
        env.close()
    for what, (expected, got) in spaces.items():
        if not _fits(expected, got):
            where = f" ({source})" if source else ""
            raise ModelEnvMismatch(
                f"the model's {what} are {describe_space(expected)}, but {env_id} made with {dict(env_kwargs)}"
                f"{where} has {describe_space(got)}: pass the training env's settings with {hint}"
            )


def infer_env_id(model_path: str | Path) -> str | None:
    """The env id of an RL Zoo model path (``logs/<algo>/<env>_<n>/<env>.zip`` or ``.../best_model.zip``)."""
    import gymnasium as gym

    path = Path(model_path)
    candidates = [path.stem]
    match = _RUN_FOLDER.match(path.parent.name)
    if match:
        candidates.append(match.group("env"))
    for candidate in candidates:
        if candidate in gym.envs.registry:
            return candidate
    return None


def refuse_vecnormalize(model_path: str | Path) -> None:
    """Raise when the RL Zoo run of ``model_path`` normalised observations with ``VecNormalize``: its
    running statistics are not part of the policy, so predictions without them would be wrong."""
    path = Path(model_path)
    for candidate in (path.parent / "vecnormalize.pkl", path.parent / path.stem / "vecnormalize.pkl"):
        if candidate.is_file():
            raise ValueError(
                f"{path}: the run normalised observations with VecNormalize ({candidate}); the policy alone "
                "would get raw observations. Retrain without `normalize` (the package's envs normalise "
                "their features causally) or apply the statistics before calling the model"
            )
    match = _RUN_FOLDER.match(path.parent.name)
    if match and (path.parent / match.group("env") / "vecnormalize.pkl").is_file():
        refuse_vecnormalize(path.parent / match.group("env") / path.name)


def infer_algo(model_path: str | Path) -> str:
    """The algorithm name of a saved model: from the path (``logs/<algo>/...``), else from the policy
    class stored in the zip."""
    import cloudpickle

    path = Path(model_path)
    in_path = [part for part in path.parts if part in ALGORITHMS]
    if in_path:
        return in_path[-1]
    path = model_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        policy_class = cloudpickle.loads(base64.b64decode(data["policy_class"][":serialized:"]))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a Stable-Baselines3 model file ({error})") from error
    algo = algorithm_for_policy(policy_class, data) if isinstance(policy_class, type) else None
    if algo is None:
        raise ValueError(f"{path}: cannot tell the algorithm of policy {policy_class!r}; pass algo explicitly")
    return algo


def load_model(path: str | Path, algo: str | None = None, device: str = "cpu") -> Any:
    """Load an SB3 / sb3-contrib / sb3_crypto model; the algorithm is read from an RL Zoo path or the
    saved policy class when not given."""
    path = model_file(path)
    if algo is None:
        algo = infer_algo(path)
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {sorted(ALGORITHMS)}")
    return ALGORITHMS[algo].load(path, device=device)


__all__ = [
    "ModelEnvMismatch",
    "check_model_fits_env",
    "describe_space",
    "infer_algo",
    "infer_env_id",
    "load_model",
    "model_file",
    "refuse_vecnormalize",
    "run_config",
    "saved_env_kwargs",
    "settings_source",
]
