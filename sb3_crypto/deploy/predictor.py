"""One prediction interface over a saved SB3 model (``.zip``) or its ONNX export (``.onnx``).

``Predictor.load(path).predict(observations)`` returns the greedy actions (and Q-values where the
model has them) for a batch of observations, after checking them against the saved observation
space: shape, finiteness and bounds (the package's envs clip every feature to the space's bound, so
a value outside it is a raw, un-normalised input). Errors raise :class:`PredictionInputError`
naming the observation and the index at fault. The HTTP service (:mod:`sb3_crypto.deploy.app`) is a thin
layer over this class.

Loading an SB3 zip whose env id is known (given, or read from an RL Zoo path) checks that the model
fits that env made with the run's ``config.yml`` settings
(:func:`~sb3_crypto.algorithms.model_io.check_model_fits_env`): a model of another env, or one copied
away from its run's settings, is refused by name at load time instead of failing on the first
request. A model that carries an observation spec (see :mod:`sb3_crypto.envs.observation`) is
checked against it instead when there is no ``config.yml`` beside it: the spec *is* its settings.

``Predictor.act(bars, account)`` turns recent raw OHLCV bars and the account state into the env's
observation (through the model's observation spec and
:class:`~sb3_crypto.envs.observation.ObservationBuilder`) and answers the action, what it means
(target exposure, hold / long / short / close, ...), the bar whose close it is decided on and the bar
at whose open it fills. It needs a model with an observation spec (``sb3_crypto.train`` saves one
in every model; an ONNX export carries its model's).
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto.algorithms.model_io import (
    ModelEnvMismatch,
    check_model_fits_env,
    infer_algo,
    infer_env_id,
    load_model,
    load_observation_spec,
    model_file,
    refuse_vecnormalize,
    run_config,
    saved_env_kwargs,
    settings_source,
)
from sb3_crypto.data import DataError
from sb3_crypto.deploy.audit_info import audit_from_metadata
from sb3_crypto.deploy.model_info import METADATA_KEY, describe_model
from sb3_crypto.deploy.modules import export_module, run_module
from sb3_crypto.deploy.onnx import onnx_session
from sb3_crypto.envs.observation import AccountState, ObservationBuilder, ObservationInputError

#: Most bars :meth:`Predictor.act` accepts by default (``max_bars``).
DEFAULT_MAX_BARS = 10_000


class PredictionInputError(ValueError):
    """Observations (or masks / states, bars / accounts) that the model cannot take; the message names the problem."""


class ActUnavailable(RuntimeError):
    """:meth:`Predictor.act` on a model without an observation spec."""


@dataclass
class Prediction:
    """Greedy actions for a batch, with Q-values (value-based models) and the next recurrent state."""

    actions: np.ndarray
    q_values: np.ndarray | None = None
    state: tuple[np.ndarray, np.ndarray] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (lists)."""
        out: dict[str, Any] = {"actions": self.actions.tolist()}
        if self.q_values is not None:
            out["q_values"] = self.q_values.tolist()
        if self.state is not None:
            out["state"] = {"h": self.state[0].tolist(), "c": self.state[1].tolist()}
        return out


def _bounds(space: dict[str, Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    low = np.broadcast_to(np.asarray(space.get("low", -np.inf), dtype=np.float64), (size,))
    high = np.broadcast_to(np.asarray(space.get("high", np.inf), dtype=np.float64), (size,))
    return low, high


@dataclass
class Decision:
    """What :meth:`Predictor.act` answers: the action for the last bar given and what it means."""

    action: Any  #: an int (Discrete) or a list of floats (Box)
    meaning: str  #: in words, from the env (e.g. ``target exposure +0.4200 (long) from +0.0000``)
    details: dict[str, Any]  #: the env's details (``target_exposure``, ``trades``, ``valid``, ...)
    decided_on_close_of: pd.Timestamp  #: the last bar given: the decision is taken on its close
    fills_at_open_of: pd.Timestamp  #: the next bar: the order fills at its open
    bars_used: int
    account: dict[str, Any]  #: the account state the observation was built with
    q_values: np.ndarray | None = None
    state: tuple[np.ndarray, np.ndarray] | None = None
    observation: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        out: dict[str, Any] = {
            "action": self.action,
            "meaning": self.meaning,
            "details": self.details,
            "decided_on_close_of": self.decided_on_close_of.isoformat(),
            "fills_at_open_of": self.fills_at_open_of.isoformat(),
            "bars_used": self.bars_used,
            "account": self.account,
        }
        if self.q_values is not None:
            out["q_values"] = self.q_values.tolist()
        if self.state is not None:
            out["state"] = {"h": self.state[0].tolist(), "c": self.state[1].tolist()}
        if self.observation is not None:
            out["observation"] = self.observation.tolist()
        return out


class Predictor:
    """Greedy predictions from an SB3 zip or an ONNX export, with input validation.

    Build it with :meth:`load`. ``info`` describes the model (algorithm, env id, observation layout
    and space, action space and meanings, inputs and outputs, package version, backend, the
    observation spec when the model has one, and the audit's verdict when an ONNX export carries one).

    :param max_batch: largest batch :meth:`predict` accepts.
    :param max_bars: most bars :meth:`act` accepts.
    """

    def __init__(self, info: dict[str, Any], run: Any, max_batch: int = 4096, max_bars: int = DEFAULT_MAX_BARS) -> None:
        self.info = info
        self._run = run  # dict of named inputs -> dict of named outputs
        self.max_batch = int(max_batch)
        self.max_bars = int(max_bars)
        self.observation_shape = tuple(info["observation_space"]["shape"])
        size = int(np.prod(self.observation_shape))
        self._low, self._high = _bounds(info["observation_space"], size)
        self._lock = threading.Lock()
        spec = info.get("observation_spec")
        self.builder: ObservationBuilder | None = None if spec is None else ObservationBuilder(spec)
        if self.builder is not None:
            self._check_spec(self.builder)

    def _check_spec(self, builder: ObservationBuilder) -> None:
        """The observation spec must describe this model's observations and actions."""
        spec = builder.spec
        where = f"{self.info.get('path', 'the model')}"
        if tuple(spec.get("observation_shape", ())) != self.observation_shape:
            raise ModelEnvMismatch(
                f"{where}: the model's observations have shape {list(self.observation_shape)}, but its observation "
                f"spec ({spec['env_id']} with {spec['env_kwargs']}) builds {spec.get('observation_shape')}"
            )
        actions = self.info["action_space"]
        expected = spec.get("action_space", {})
        if expected.get("n") != actions.get("n") or expected.get("shape", actions.get("shape")) != actions.get("shape"):
            raise ModelEnvMismatch(f"{where}: the model's actions are {actions}, its observation spec's {expected}")
        if self.info.get("env_id") not in (None, spec["env_id"]):
            raise ModelEnvMismatch(
                f"{where}: env id {self.info['env_id']} given, but the model's observation spec is of {spec['env_id']}"
            )

    @property
    def can_act(self) -> bool:
        """Whether :meth:`act` works: the model carries an observation spec."""
        return self.builder is not None

    def why_not_act(self) -> str:
        """Why :meth:`act` does not work for this model (empty when it does)."""
        if self.can_act:
            return ""
        return (
            f"{self.info.get('path', 'this model')} carries no observation spec, so it can only predict raw "
            "observations (POST /predict): train it with `python -m sb3_crypto.train`, or add the spec of its "
            "training env with sb3_crypto.algorithms.model_io.save_observation_spec(model_path, env) (and export "
            "the ONNX file again)"
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        algo: str | None = None,
        env_id: str | None = None,
        max_batch: int = 4096,
        max_bars: int = DEFAULT_MAX_BARS,
    ) -> Predictor:
        """Load ``path``: ``.onnx`` runs on onnxruntime, anything else is loaded as an SB3 model (``.zip``
        added when left out, as SB3 does). A missing file raises ``FileNotFoundError("no model file at
        ...")``; an SB3 model that does not fit its known env (or its observation spec) raises
        :class:`~sb3_crypto.algorithms.model_io.ModelEnvMismatch`."""
        path = Path(path)
        if path.suffix == ".onnx":
            if not path.is_file():
                raise FileNotFoundError(f"no model file at {path}")
            return cls._from_onnx(path, max_batch, max_bars)
        return cls._from_sb3(model_file(path), algo, env_id, max_batch, max_bars)

    @classmethod
    def _from_sb3(cls, path: Path, algo: str | None, env_id: str | None, max_batch: int, max_bars: int) -> Predictor:
        refuse_vecnormalize(path)
        model = load_model(path, algo or infer_algo(path))
        spec = load_observation_spec(path)
        env_id = env_id or infer_env_id(path) or (spec["env_id"] if spec is not None else None)
        # Without the run's config.yml the spec holds the model's settings (the env's defaults would not).
        if env_id is not None and (spec is None or run_config(path) is not None):
            cls._check_env(model, env_id, path)
        module, signature = export_module(model)
        info = {**describe_model(model, env_id, signature, spec), "backend": "sb3", "path": str(path)}
        return cls(info, lambda inputs: run_module(module, signature, inputs), max_batch, max_bars)

    @staticmethod
    def _check_env(model: Any, env_id: str, path: Path) -> None:
        """The model must fit ``env_id`` made with its run's settings (registered env ids only: an id
        of a package not imported here cannot be made). Without the training data on this machine the
        check cannot run; that is warned about, not refused, since serving needs no data."""
        import gymnasium as gym

        if env_id not in gym.envs.registry:
            return
        try:
            check_model_fits_env(
                model,
                env_id,
                saved_env_kwargs(path),
                source=settings_source(path),
                hint="the run's config.yml next to the model",
            )
        except DataError as error:
            warnings.warn(f"{path}: cannot check the model against {env_id} ({error})", stacklevel=3)

    @classmethod
    def _from_onnx(cls, path: Path, max_batch: int, max_bars: int) -> Predictor:
        try:
            session = onnx_session(path)
        except Exception as error:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ValueError(f"{path}: onnxruntime cannot load this file ({error})") from error
        meta = session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(
                f"{path}: ONNX file without sb3_crypto metadata; export it with `python -m sb3_crypto.export`"
            )
        info = {**json.loads(meta[METADATA_KEY]), "backend": "onnx", "path": str(path)}
        audit = audit_from_metadata(meta, where=str(path))
        if audit is not None:  # the verdict of python -m sb3_crypto.audit, embedded by the export
            info["audit"] = audit
        names = [output.name for output in session.get_outputs()]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            feed = {item.name: inputs[item.name] for item in session.get_inputs()}
            return dict(zip(names, session.run(None, feed)))

        return cls(info, run, max_batch, max_bars)

    # ------------------------------------------------------------------------------------------

    def validate(self, observations: Any) -> np.ndarray:
        """``observations`` as a ``float32`` batch ``(n, *shape)``; raises :class:`PredictionInputError`."""
        try:
            array = np.asarray(observations, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise PredictionInputError(
                f"observations must be numbers in arrays of shape {list(self.observation_shape)} (ragged or "
                f"non-numeric input: {error})"
            ) from error
        shape = self.observation_shape
        if array.size == 0:
            raise PredictionInputError("observations is empty; send at least one observation")
        if array.shape == shape:
            array = array[None]
        if array.ndim != len(shape) + 1 or array.shape[1:] != shape:
            raise PredictionInputError(
                f"observations have shape {list(array.shape)}; expected [batch, {', '.join(map(str, shape))}] "
                f"or a single observation of shape {list(shape)}"
            )
        if len(array) > self.max_batch:
            raise PredictionInputError(f"batch of {len(array)} observations exceeds the limit of {self.max_batch}")
        flat = array.reshape(len(array), -1)
        bad = ~np.isfinite(flat)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise PredictionInputError(
                f"observation {row}: value at index {col} is {flat[row, col]} ({int(bad.sum())} non-finite values "
                "in the batch)"
            )
        outside = (flat < self._low) | (flat > self._high)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            name = self._feature_name(int(col))
            raise PredictionInputError(
                f"observation {row}: value {flat[row, col]:.6g} at index {col}{name} is outside the observation "
                f"space [{self._low[col]:.6g}, {self._high[col]:.6g}]; send the env's normalised observation, "
                "not raw prices"
            )
        return array.astype(np.float32)

    def _feature_name(self, index: int) -> str:
        layout = self.info.get("observation_layout")
        if not layout:
            return ""
        n_channels = len(layout["channels"])
        window_dim = layout["window_size"] * n_channels
        if index < window_dim:
            bar, channel = divmod(index, n_channels)
            return f" (window bar {bar}, channel {layout['channels'][channel]!r})"
        rest = [*layout["account"], *layout["extra"]]
        k = index - window_dim
        return f" ({rest[k]!r})" if k < len(rest) else ""

    def _masks(self, action_masks: Any, n: int) -> np.ndarray:
        n_actions = self.info["action_space"].get("n")
        if n_actions is None:
            raise PredictionInputError("action_masks given, but the model's action space is not Discrete")
        masks = np.asarray(action_masks)
        if masks.dtype.kind not in "biu" or masks.shape not in ((n, n_actions), (n_actions,)):
            raise PredictionInputError(
                f"action_masks must be booleans of shape [{n}, {n_actions}], got shape {list(masks.shape)} "
                f"of {masks.dtype}"
            )
        masks = np.broadcast_to(masks.astype(bool), (n, n_actions))
        empty = np.flatnonzero(~masks.any(axis=1))
        if empty.size:
            raise PredictionInputError(f"action_masks row {empty[0]} allows no action")
        return masks.copy()  # writable and contiguous (torch warns about read-only broadcast views)

    def _state(self, state: Any, episode_start: Any, n: int) -> dict[str, np.ndarray]:
        layers, _, hidden = self.info["lstm_state_shape"]
        expected = (layers, n, hidden)
        if state is None:
            h = c = np.zeros(expected, dtype=np.float32)
            starts = np.ones(n, dtype=np.float32)
        else:
            try:
                h, c = (np.asarray(part, dtype=np.float32) for part in state)
            except (TypeError, ValueError) as error:
                raise PredictionInputError(
                    f"state must be a pair (h, c) of arrays of shape {list(expected)}"
                ) from error
            for name, part in (("h", h), ("c", c)):
                if part.shape != expected:
                    raise PredictionInputError(
                        f"state {name} has shape {list(part.shape)}; expected {list(expected)} (layers, batch, hidden)"
                    )
                if not np.isfinite(part).all():
                    raise PredictionInputError(f"state {name} has non-finite values")
            starts = np.zeros(n, dtype=np.float32)
        if episode_start is not None:
            starts = np.asarray(episode_start, dtype=np.float32).reshape(-1)
            if starts.shape != (n,):
                raise PredictionInputError(f"episode_start needs one flag per observation ({n}), got {starts.size}")
        return {"state_h": h, "state_c": c, "episode_start": starts}

    def predict(
        self,
        observations: Any,
        action_masks: Any = None,
        state: Any = None,
        episode_start: Any = None,
    ) -> Prediction:
        """Greedy actions for a batch (or one observation).

        :param action_masks: ``(n, n_actions)`` booleans; MaskablePPO takes them as an input, value-based
            models choose the best allowed action.
        :param state: recurrent state ``(h, c)`` from the previous call (RecurrentPPO); ``None`` starts
            new episodes.
        :param episode_start: per-observation flags that reset the recurrent state.
        """
        obs = self.validate(observations)
        n = len(obs)
        kind = self.info["kind"]
        inputs: dict[str, np.ndarray] = {"obs": obs}
        masks = None if action_masks is None else self._masks(action_masks, n)
        if kind == "masked_actor_critic":
            inputs["action_masks"] = masks if masks is not None else np.ones((n, self.info["action_space"]["n"]), bool)
        elif masks is not None and kind not in ("q_values", "quantiles"):
            raise PredictionInputError(f"this {self.info['algorithm']} model does not take action masks")
        if kind == "recurrent":
            inputs.update(self._state(state, episode_start, n))
        elif state is not None:
            raise PredictionInputError(f"this {self.info['algorithm']} model is not recurrent; do not send a state")
        with self._lock:
            outputs = self._run(inputs)
        q_values = outputs.get("q_values")
        actions = outputs["action"]
        if q_values is not None and masks is not None:
            actions = np.where(masks, q_values, -np.inf).argmax(axis=1)
        next_state = (outputs["next_state_h"], outputs["next_state_c"]) if kind == "recurrent" else None
        return Prediction(np.asarray(actions), q_values, next_state)

    # ------------------------------------------------------------------------------------------

    def act(
        self,
        bars: Any,
        account: AccountState | dict[str, Any] | None = None,
        *,
        state: Any = None,
        episode_start: bool | None = None,
        include_observation: bool = False,
    ) -> Decision:
        """The greedy action for the last of ``bars`` (recent raw OHLCV bars with timestamps: a DataFrame
        or records ``[{"timestamp": ..., "open": ..., ...}]``) and the ``account`` state (a mapping of the
        env's account state fields, see ``info["observation_spec"]["account_state"]``; ``None`` for a
        fresh account).

        The bars are validated as the loader does (order, duplicates, gaps, NaN, non-positive prices,
        too few for the window plus the feature lookback); every problem raises
        :class:`PredictionInputError` naming the bar (``bars[k]``) or the account field. MaskablePPO
        gets the env's action masks, RecurrentPPO the ``state`` of the previous call.

        :raises ActUnavailable: for a model without an observation spec.
        """
        builder = self.builder
        if builder is None:
            raise ActUnavailable(self.why_not_act())
        n = len(bars) if hasattr(bars, "__len__") else 0
        if n > self.max_bars:
            raise PredictionInputError(f"bars: {n} given, more than the limit of {self.max_bars}")
        try:
            built = builder.build(bars, account)
        except ObservationInputError as error:
            raise PredictionInputError(str(error)) from None
        masks = built.action_masks if self.info["kind"] == "masked_actor_critic" else None
        starts = None if episode_start is None else [bool(episode_start)]
        prediction = self.predict(built.observation, masks, state, starts)
        action = prediction.actions[0]
        details = built.describe_action(action)
        meaning = str(details.pop("meaning"))
        return Decision(
            action=action.tolist(),
            meaning=meaning,
            details=details,
            decided_on_close_of=built.decided_on_close_of,
            fills_at_open_of=built.fills_at_open_of,
            bars_used=built.n_bars,
            account=built.account.to_dict(),
            q_values=None if prediction.q_values is None else prediction.q_values[0],
            state=prediction.state,
            observation=built.observation if include_observation else None,
        )
