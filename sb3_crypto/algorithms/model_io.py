"""Model files: load a saved model, infer its algorithm and env id, read the run's env settings.

Every command (backtest, export, serve, the predictor) reads model files through this module. An
RL Zoo run folder looks like ``logs/<algo>/<env>_<n>/<env>.zip`` with ``<env>/config.yml`` (the
hyper-parameters and ``env_kwargs``) and, when observations were normalised, ``vecnormalize.pkl``.

A model's zip also carries its **observation spec** (entry :data:`OBSERVATION_SPEC_ENTRY`, see
:mod:`sb3_crypto.envs.observation`): what builds its observations from raw bars — env id, env
keyword arguments, the normaliser statistics of the training env, layout, account state and bars
needed. ``sb3_crypto.train`` writes it with every model it saves (final model, checkpoints, best
model) through :func:`save_model_with_spec`; :func:`save_observation_spec` adds it to any saved
model, and :func:`load_observation_spec` reads it back.
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
from sb3_crypto.envs.observation import check_spec
from sb3_crypto.files import replace_zip_entries, save_model

#: Name of the observation spec inside a model's zip (SB3's loader ignores entries it does not know).
OBSERVATION_SPEC_ENTRY = "sb3_crypto_observation_spec.json"

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


def observation_spec_of(env: Any) -> dict[str, Any] | None:
    """The observation spec of a package env: a Gymnasium env (wrapped or not) or a VecEnv (its first
    env); ``None`` for an env without one (not one of the package's) or no env."""
    if env is None:
        return None
    if hasattr(env, "env_method") and hasattr(env, "has_attr"):  # a VecEnv, maybe in subprocesses
        if not env.has_attr("observation_spec"):
            return None
        return env.env_method("observation_spec", indices=[0])[0]
    method = getattr(getattr(env, "unwrapped", env), "observation_spec", None)
    return method() if callable(method) else None


def _spec_bytes(spec: dict[str, Any]) -> bytes:
    return (json.dumps(spec, indent=2, allow_nan=False) + "\n").encode("utf-8")


def save_model_with_spec(model: Any, path: str | Path, env: Any = None) -> Path:
    """Save ``model`` atomically (``.zip`` added when missing) with the observation spec of ``env``
    (default: the model's own training env, ``model.get_env()``) inside the zip, written in the same
    atomic write; a model of an env without a spec is saved as it is."""
    spec = observation_spec_of(model.get_env() if env is None else env)
    extra = {OBSERVATION_SPEC_ENTRY: _spec_bytes(spec)} if spec is not None else None
    return save_model(model, path, extra_files=extra)


def save_observation_spec(model_path: str | Path, env: Any) -> Path:
    """Put the observation spec of ``env`` into the saved model at ``model_path`` (rewritten atomically,
    replacing a spec already there); returns the model's path.

    Give the env the model was **trained** in (any split of it: they share its statistics, fitted on
    the training split's warm-up), never one made on the data to act on, whose statistics would be
    fitted on that data. Raises ``ValueError`` for an env that has no observation spec.
    """
    path = model_file(model_path)
    spec = observation_spec_of(env)
    if spec is None:
        raise ValueError(f"{env!r} has no observation spec (only the package's envs have one)")
    return replace_zip_entries(path, {OBSERVATION_SPEC_ENTRY: _spec_bytes(check_spec(spec))})


def load_observation_spec(model_path: str | Path) -> dict[str, Any] | None:
    """The observation spec saved in a model's zip, or ``None`` when it has none (a model saved by
    plain ``model.save``); a spec this version cannot read raises ``ValueError``."""
    path = model_file(model_path)
    try:
        with zipfile.ZipFile(path) as archive:
            if OBSERVATION_SPEC_ENTRY not in archive.namelist():
                return None
            text = archive.read(OBSERVATION_SPEC_ENTRY).decode("utf-8")
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not a Stable-Baselines3 model file ({error})") from error
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: unreadable observation spec ({error})") from error
    return check_spec(spec, source=f"{path} ({OBSERVATION_SPEC_ENTRY})")


__all__ = [
    "OBSERVATION_SPEC_ENTRY",
    "ModelEnvMismatch",
    "check_model_fits_env",
    "describe_space",
    "infer_algo",
    "infer_env_id",
    "load_model",
    "load_observation_spec",
    "model_file",
    "observation_spec_of",
    "refuse_vecnormalize",
    "run_config",
    "save_model_with_spec",
    "save_observation_spec",
    "saved_env_kwargs",
    "settings_source",
]
