"""The HTTP prediction service: a FastAPI app over :class:`~sb3_crypto.deploy.predictor.Predictor`
(an SB3 ``.zip`` or an ONNX export):

* ``GET /health`` — ``{"status": "ok"}`` once the model is loaded;
* ``GET /model/info`` — algorithm, env id, observation layout and space, action space and meanings,
  inputs and outputs, package version, backend, ``max_batch`` and ``max_body_bytes``;
* ``POST /predict`` — ``{"observations": [[...], ...], "action_masks": [[...]]?, "state": {"h": ..., "c": ...}?,
  "episode_start": [...]?}`` answers ``{"actions": [...], "q_values": [...]?, "state": {...}?}``;
* OpenAPI docs at ``/docs``.

Before anything is parsed, :class:`~sb3_crypto.deploy.limits.RequestLimits` (a pure ASGI
middleware) refuses a ``POST /predict`` that is not ``Content-Type: application/json`` with 415, and
a body over ``max_body_bytes`` with 413 — from its ``Content-Length`` before reading it, or by
counting a chunked body while it streams — so an oversized body costs at most the limit in memory.
The default limit is :func:`~sb3_crypto.deploy.limits.default_max_body_bytes`:
``max_batch x (observation size + number of actions + recurrent state size + 1) x 40 bytes + 64 KiB``.

Bad requests get a 4xx whose ``detail`` names the problem — malformed JSON (400), missing fields or
wrong types (422), wrong observation shape, non-finite or out-of-space values, empty batches (422),
batches over ``--max-batch`` (413), bodies over ``--max-body-bytes`` (413), bodies that are not JSON
(415) — and the service keeps serving. Requests beyond ``--limit-concurrency`` in flight are refused
with 503 instead of queueing without bound.
"""

from __future__ import annotations

from typing import Any

from sb3_crypto.deploy.limits import RequestLimits, default_max_body_bytes
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
    of its ``max_batch``, observation size, number of discrete actions and recurrent state size."""
    info = predictor.info
    observation_size = 1
    for dim in predictor.observation_shape:
        observation_size *= int(dim)
    n_actions = int(info.get("action_space", {}).get("n") or 0)
    state_size = 0
    if info.get("lstm_state_shape"):
        layers, _, hidden = info["lstm_state_shape"]
        state_size = 2 * int(layers) * int(hidden)
    return default_max_body_bytes(predictor.max_batch, observation_size, n_actions, state_size)


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
        json_paths=("/predict",),
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

    return app
