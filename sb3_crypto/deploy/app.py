"""The HTTP prediction service: a FastAPI app over :class:`~sb3_crypto.deploy.predictor.Predictor`
(an SB3 ``.zip`` or an ONNX export):

* ``GET /health`` — ``{"status": "ok"}`` once the model is loaded;
* ``GET /model/info`` — algorithm, env id, observation layout and space, action space and meanings,
  inputs and outputs, package version, backend, ``max_batch`` and ``max_body_bytes``, and ``audit``
  (verdict, reasons, figures, date) when the ONNX export embedded one;
* ``POST /predict`` — ``{"observations": [[...], ...], "action_masks": [[...]]?, "state": {"h": ..., "c": ...}?,
  "episode_start": [...]?}`` answers ``{"actions": [...], "q_values": [...]?, "state": {...}?}``;
* ``POST /act`` (models with an observation spec) — ``{"bars": [{"timestamp": ..., "open": ..., "high": ...,
  "low": ..., "close": ..., "volume": ...}, ...], "account": {...}?, "state": {...}?, "episode_start": bool?,
  "include_observation": bool?}``: recent raw bars (oldest first) and the account state answer
  ``{"action", "meaning", "details", "decided_on_close_of", "fills_at_open_of", "bars_used", "account",
  "q_values"?, "state"?, "observation"?}`` (see :meth:`~sb3_crypto.deploy.predictor.Predictor.act`);
  a model without an observation spec answers 409;
* OpenAPI docs at ``/docs``.

Before anything is parsed, :class:`~sb3_crypto.deploy.limits.RequestLimits` (a pure ASGI
middleware) refuses a ``POST /predict`` or ``POST /act`` that is not ``Content-Type: application/json``
with 415, and a body over ``max_body_bytes`` with 413 — from its ``Content-Length`` before reading it,
or by counting a chunked body while it streams — so an oversized body costs at most the limit in memory.
The default limit is :func:`~sb3_crypto.deploy.limits.default_max_body_bytes`:
``max_batch x (observation size + number of actions + recurrent state size + 1) x 40 bytes + 64 KiB``,
raised for a model that can act to :func:`~sb3_crypto.deploy.limits.default_act_body_bytes` when that
is larger (``max_bars x 8 x 40 bytes`` plus the recurrent state and 64 KiB).

Bad requests get a 4xx whose ``detail`` names the problem — malformed JSON (400), missing fields or
wrong types (422), wrong observation shape, non-finite or out-of-space values, empty batches (422),
batches over ``--max-batch`` or more bars than ``--max-bars`` (413), bodies over ``--max-body-bytes``
(413), bodies that are not JSON (415); for ``/act`` bars out of order, repeated, with a gap, NaN or
non-positive prices, too few for the window plus the feature lookback, and wrong account fields (422,
naming ``bars[k]`` or the field) — and the service keeps serving. Requests beyond
``--limit-concurrency`` in flight are refused with 503 instead of queueing without bound.
"""

from __future__ import annotations

from typing import Any

from sb3_crypto.deploy.limits import RequestLimits, default_act_body_bytes, default_max_body_bytes
from sb3_crypto.deploy.predictor import PredictionInputError, Predictor
from sb3_crypto.version import __version__

SERVE_EXTRA = "install the service's dependencies with `pip install 'sb3_crypto[serve]'`"
try:
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as _error:  # pragma: no cover - depends on the installation
    raise ImportError(f"the prediction service needs pydantic ({_error}); {SERVE_EXTRA}") from _error


class LstmState(BaseModel):
    """Recurrent state ``(layers, batch, hidden)`` returned by the previous call."""

    h: list[list[list[float]]]
    c: list[list[list[float]]]


class PredictRequest(BaseModel):
    """A batch of observations (each shaped like the model's observation space)."""

    model_config = ConfigDict(extra="forbid")
    observations: list[Any] = Field(description="batch of observations, shape [batch, *observation_shape]")
    action_masks: list[list[bool]] | None = Field(default=None, description="[batch, n_actions] valid actions")
    state: LstmState | None = Field(default=None, description="recurrent state from the previous call")
    episode_start: list[bool] | None = Field(default=None, description="per observation: reset the state")


class PredictResponse(BaseModel):
    """Greedy actions, Q-values where the model has them, the next recurrent state for LSTM policies."""

    actions: list[Any]
    q_values: list[list[float]] | None = None
    state: LstmState | None = None


class Bar(BaseModel):
    """One raw bar: its open time and prices (a close-only model reads ``close`` alone)."""

    model_config = ConfigDict(extra="forbid")
    timestamp: str | int | float = Field(description="bar open time: ISO 8601 text (UTC unless stated) or epoch")
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: float | None = None
    vwap: float | None = None
    trades: float | None = None


class ActRequest(BaseModel):
    """Recent raw bars (oldest first, the decision bar last) and the account state."""

    model_config = ConfigDict(extra="forbid")
    bars: list[Bar] = Field(description="recent bars, oldest first; the decision is taken on the last one's close")
    account: dict[str, Any] | None = Field(
        default=None, description="the env's account state (see /model/info observation_spec.account_state)"
    )
    state: LstmState | None = Field(default=None, description="recurrent state from the previous call")
    episode_start: bool | None = Field(default=None, description="reset the recurrent state")
    include_observation: bool = Field(default=False, description="also answer the observation built")


class ActResponse(BaseModel):
    """The action, its meaning and when it is decided and filled."""

    action: Any
    meaning: str
    details: dict[str, Any]
    decided_on_close_of: str
    fills_at_open_of: str
    bars_used: int
    account: dict[str, Any]
    q_values: list[float] | None = None
    state: LstmState | None = None
    observation: list[float] | None = None


def require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(f"the prediction service needs fastapi and uvicorn ({error}); {SERVE_EXTRA}") from error


def _location(loc: Any) -> str:
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts) if parts else "body"


def predictor_max_body_bytes(predictor: Predictor) -> int:
    """The default body limit for ``predictor``: :func:`~sb3_crypto.deploy.limits.default_max_body_bytes`
    of its ``max_batch``, observation size, number of discrete actions and recurrent state size, or, for
    a model that can act, :func:`~sb3_crypto.deploy.limits.default_act_body_bytes` of its ``max_bars``
    when that is larger."""
    info = predictor.info
    observation_size = 1
    for dim in predictor.observation_shape:
        observation_size *= int(dim)
    n_actions = int(info.get("action_space", {}).get("n") or 0)
    state_size = 0
    if info.get("lstm_state_shape"):
        layers, _, hidden = info["lstm_state_shape"]
        state_size = 2 * int(layers) * int(hidden)
    limit = default_max_body_bytes(predictor.max_batch, observation_size, n_actions, state_size)
    if predictor.can_act:
        limit = max(limit, default_act_body_bytes(predictor.max_bars, state_size))
    return limit


def create_app(predictor: Predictor, max_body_bytes: int | None = None) -> Any:
    """The FastAPI application serving ``predictor``.

    :param max_body_bytes: largest request body in bytes; larger ones get 413 before they are read
        or parsed. ``None`` (default) derives it from the batch limit with
        :func:`predictor_max_body_bytes`:
        ``max_batch x (observation size + n_actions + recurrent state size + 1) x 40 + 64 KiB``.
    """
    require_fastapi()
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    info = predictor.info
    app = FastAPI(
        title="sb3_crypto prediction service",
        version=__version__,
        description=f"Greedy actions of a {info['algorithm']} policy for {info.get('env_id') or 'its env'}.",
    )
    limit = predictor_max_body_bytes(predictor) if max_body_bytes is None else int(max_body_bytes)
    if limit < 1:
        raise ValueError(f"max_body_bytes must be a positive number of bytes, got {max_body_bytes}")
    app.add_middleware(
        RequestLimits,
        max_body_bytes=limit,
        json_paths=("/predict", "/act"),
        how_to_raise="raise the limit with `--max-body-bytes` (create_app(max_body_bytes=...))",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            first = next(p for p in problems if p.get("type") == "json_invalid")
            reason = first.get("ctx", {}).get("error", first.get("msg", "invalid JSON"))
            where = [part for part in first.get("loc", ()) if isinstance(part, int)]
            at = f" at character {where[0]}" if where else ""
            return JSONResponse(status_code=400, content={"detail": f"malformed JSON body{at}: {reason}"})
        messages = [f"{_location(p.get('loc', ()))}: {p.get('msg', 'invalid')}" for p in problems[:5]]
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return JSONResponse(status_code=422, content={"detail": "; ".join(messages) + more})

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the model is loaded and the service answers."""
        return {"status": "ok"}

    @app.get("/model/info")
    def model_info() -> dict[str, Any]:
        """What the served model is and what it expects."""
        return {**info, "max_batch": predictor.max_batch, "max_body_bytes": limit}

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    def predict(request: PredictRequest) -> Any:
        """Greedy actions for a batch of observations."""
        if len(request.observations) > predictor.max_batch:
            return JSONResponse(
                status_code=413,
                content={
                    "detail": f"batch of {len(request.observations)} observations exceeds the limit of "
                    f"{predictor.max_batch}; split it into smaller requests"
                },
            )
        state = None if request.state is None else (request.state.h, request.state.c)
        try:
            result = predictor.predict(request.observations, request.action_masks, state, request.episode_start)
        except PredictionInputError as error:
            return JSONResponse(status_code=422, content={"detail": str(error)})
        return result.to_dict()

    @app.post("/act", response_model=ActResponse, response_model_exclude_none=True)
    def act(request: ActRequest) -> Any:
        """The action for the last of recent raw bars, given the account state."""
        if not predictor.can_act:
            return JSONResponse(status_code=409, content={"detail": predictor.why_not_act()})
        if len(request.bars) > predictor.max_bars:
            return JSONResponse(
                status_code=413,
                content={
                    "detail": f"{len(request.bars)} bars exceed the limit of {predictor.max_bars}; send the most "
                    "recent ones (or raise --max-bars)"
                },
            )
        bars = [bar.model_dump(exclude_unset=True) for bar in request.bars]
        state = None if request.state is None else (request.state.h, request.state.c)
        try:
            decision = predictor.act(
                bars,
                request.account,
                state=state,
                episode_start=request.episode_start,
                include_observation=request.include_observation,
            )
        except PredictionInputError as error:
            return JSONResponse(status_code=422, content={"detail": str(error)})
        return decision.to_dict()

    return app
