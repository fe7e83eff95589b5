"""Acting on raw bars: the scaled-down real-data flow (train on the CoinMarketCap slice, save, build a
Predictor, act on the last bars), ONNX, discrete / masked / recurrent models and the ``/act`` endpoint."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from helpers import SESSION, TRADING_KWARGS
from stable_baselines3 import SAC
from test_serve import Server, call

from sb3_crypto.algorithms.model_io import load_observation_spec, save_model_with_spec, save_observation_spec
from sb3_crypto.deploy.onnx import export_onnx
from sb3_crypto.deploy.predictor import ActUnavailable, PredictionInputError, Predictor
from sb3_crypto.envs.observation import TradingAccount

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "coinmarketcap_daily_slice.csv"
#: CryptoTrading-v0 on the CoinMarketCap slice (61 close-only daily BTC bars), scaled down.
REAL = {
    "data": str(FIXTURE),
    "asset": "BTCBitcoin",
    "window_size": 5,
    "episode_length": 16,
    "norm_warmup": 8,
    "fee": 0.001,
    "dead_band": 0.05,
}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """SAC trained a few hundred steps on the real daily slice, saved with its observation spec."""
    folder = tmp_path_factory.mktemp("real")
    env = gym.make("CryptoTrading-v0", **REAL)
    model = SAC("MlpPolicy", env, learning_starts=50, batch_size=32, seed=0, device="cpu")
    model.learn(300)
    path = save_model_with_spec(model, folder / "sac_btc.zip")
    return model, path, folder


def test_act_equals_predict_on_the_envs_observation_over_the_test_split(real) -> None:
    model, path, _ = real
    predictor = Predictor.load(path)
    assert predictor.can_act and predictor.info["env_id"] == "CryptoTrading-v0"
    assert predictor.info["observation_spec"]["bars"] | {"requirement": None} == {
        "needed": 6,
        "most": None,
        "window_size": 5,
        "lookback": 1,
        "freq": "1d",
        "close_only": True,
        "requirement": None,
    }
    env = gym.make("CryptoTrading-v0", **{**REAL, "split": "test", "episode_length": None})
    inner = env.unwrapped
    raw = pd.read_csv(FIXTURE)
    raw = raw[raw["asset"] == "BTCBitcoin"]
    bars = [{"timestamp": day, "close": price} for day, price in zip(raw["date"], raw["price_usd"])]
    obs, info = env.reset(seed=0)
    peak, steps, done = info["equity"], 0, False
    while not done:
        t = info["bar"]
        account = TradingAccount(
            cash=inner.ledger.cash,
            position=inner.ledger.position,
            entry_price=inner.ledger.entry_price,
            peak_equity=peak,
            step=steps,
            episode_length=inner.n_decisions,
        )
        decision = predictor.act(bars[: t + 1], account, include_observation=True)
        expected, _ = model.predict(obs, deterministic=True)
        assert decision.observation.tobytes() == obs.tobytes()
        np.testing.assert_allclose(decision.action, expected, rtol=0, atol=1e-6)
        assert decision.decided_on_close_of == pd.Timestamp(raw["date"].iloc[t], tz="UTC")
        assert decision.fills_at_open_of == decision.decided_on_close_of + pd.Timedelta(days=1)
        assert "target exposure" in decision.meaning and -1.0 <= decision.details["target_exposure"] <= 1.0
        obs, _, terminated, truncated, info = env.step(expected)
        peak, steps, done = max(peak, info["equity"]), steps + 1, terminated or truncated
    assert steps >= 5
    # The latest bar of the data (no next bar in the file): the env's own hook gives the observation.
    last = len(bars) - 1
    account = {"cash": 4000.0, "position": 0.25, "entry_price": 21000.0, "peak_equity": 10_500.0}
    decision = predictor.act(bars[-30:], account, include_observation=True)
    fresh = gym.make("CryptoTrading-v0", **{**REAL, "split": "all"}).unwrapped
    own = fresh.observation_at(last, account)
    assert decision.observation.tobytes() == own.tobytes()
    np.testing.assert_allclose(decision.action, model.predict(own, deterministic=True)[0], rtol=0, atol=1e-6)
    assert decision.decided_on_close_of == pd.Timestamp("2022-09-30", tz="UTC")
    assert decision.fills_at_open_of == pd.Timestamp("2022-10-01", tz="UTC")
    assert decision.account["position"] == 0.25 and decision.bars_used == 30


def test_onnx_export_carries_the_spec_and_acts_alike(real) -> None:
    model, path, folder = real
    export_onnx(model, folder / "sac_btc.onnx", env_id="CryptoTrading-v0", observation_spec=load_observation_spec(path))
    from_zip, from_onnx = Predictor.load(path), Predictor.load(folder / "sac_btc.onnx")
    assert from_onnx.info["observation_spec"] == from_zip.info["observation_spec"]
    raw = pd.read_csv(FIXTURE)
    raw = raw[raw["asset"] == "BTCBitcoin"].tail(20)
    bars = pd.DataFrame({"close": raw["price_usd"].to_numpy()}, index=pd.DatetimeIndex(raw["date"], tz="UTC"))
    a, b = from_zip.act(bars), from_onnx.act(bars)
    np.testing.assert_allclose(a.action, b.action, atol=1e-5)
    assert a.decided_on_close_of == b.decided_on_close_of and a.meaning.split()[0] == b.meaning.split()[0]


def test_models_without_a_spec_cannot_act_until_one_is_added(real, tmp_path: Path) -> None:
    model, _, _ = real
    model.save(tmp_path / "plain.zip")
    predictor = Predictor.load(tmp_path / "plain.zip")
    assert not predictor.can_act
    with pytest.raises(ActUnavailable, match=r"carries no observation spec.*save_observation_spec"):
        predictor.act([])
    save_observation_spec(tmp_path / "plain.zip", gym.make("CryptoTrading-v0", **REAL))
    assert Predictor.load(tmp_path / "plain.zip").can_act


def test_a_spec_that_does_not_fit_the_model_is_refused(real, tmp_path: Path) -> None:
    model, _, _ = real
    model.save(tmp_path / "other.zip")
    save_observation_spec(tmp_path / "other.zip", gym.make("CryptoTrading-v0", **{**REAL, "window_size": 6}))
    with pytest.raises(ValueError, match=r"observations have shape \[9\], but its observation spec.*\[10\]"):
        Predictor.load(tmp_path / "other.zip")


def test_bad_bars_and_accounts_raise_prediction_input_errors(real) -> None:
    _, path, _ = real
    predictor = Predictor.load(path, max_bars=40)
    raw = pd.read_csv(FIXTURE)
    raw = raw[raw["asset"] == "BTCBitcoin"]
    bars = [{"timestamp": day, "close": price} for day, price in zip(raw["date"], raw["price_usd"])][-10:]
    with pytest.raises(PredictionInputError, match=r"bars: 4 given, but at least 6 bars"):
        predictor.act(bars[:4])
    with pytest.raises(PredictionInputError, match=r"bars\[5\] .* comes 2 days 00:00:00 after bars\[4\]"):
        predictor.act(bars[:5] + bars[6:])
    with pytest.raises(PredictionInputError, match=r"account\.position must be a number"):
        predictor.act(bars, {"position": "long"})
    with pytest.raises(PredictionInputError, match=r"bars: 50 given, more than the limit of 40"):
        predictor.act(bars * 5)


# ------------------------------------------------------------------------------ discrete, masks, LSTM
def session_frame(inner, step: int) -> pd.DataFrame:
    sessions = inner.sessions
    values = sessions.bars[inner._index, : inner.context + step]
    signal = pd.Timestamp(sessions.signal_times[inner._index], tz="UTC")
    index = pd.date_range(end=signal + pd.Timedelta(minutes=step), periods=len(values), freq="1min", name="timestamp")
    return pd.DataFrame(values, index=index, columns=["open", "high", "low", "close", "volume", "vwap", "trades"])


@pytest.mark.parametrize("name", ["d3qn", "ppo_mask"])
def test_discrete_session_models_act_with_meanings_and_masks(trained, tmp_path: Path, name: str) -> None:
    model, env_id = trained(name)
    assert env_id == SESSION
    env = gym.make(SESSION, split="test", sequential=True)
    path = save_model_with_spec(model, tmp_path / f"{name}.zip", env=env)
    predictor = Predictor.load(path)
    obs, _ = env.reset(seed=0)
    inner = env.unwrapped
    for step in range(inner.session):
        account = {"position": inner.ledger.position, "entry_price": inner.ledger.entry_price}
        decision = predictor.act(session_frame(inner, step), {**account, "actions": inner.executed_actions})
        masks = inner.action_masks() if name == "ppo_mask" else None
        expected = int(
            model.predict(obs, deterministic=True, **({"action_masks": masks} if name == "ppo_mask" else {}))[0]
        )
        assert decision.action == expected
        assert decision.details["executed"] in ("hold", "long", "short", "close")
        if name == "ppo_mask":
            assert decision.details["valid"]  # MaskablePPO gets the env's masks
        if decision.q_values is not None:
            assert len(decision.q_values) == 4
        obs, _, terminated, _, _ = env.step(expected)
        if terminated:
            break


def test_recurrent_models_carry_their_state(trained, tmp_path: Path) -> None:
    model, env_id = trained("ppo_lstm")
    env = gym.make(env_id, **TRADING_KWARGS)
    path = save_model_with_spec(model, tmp_path / "lstm.zip", env=env)
    predictor = Predictor.load(path)
    frame = env.unwrapped.market.frame
    first = predictor.act(frame.iloc[:40])
    assert first.state is not None
    second = predictor.act(frame.iloc[:41], state=first.state)
    obs = [env.unwrapped.observation_at(39), env.unwrapped.observation_at(40, {"step": 1})]
    expected, state = model.predict(obs[0], state=None, episode_start=np.array([True]), deterministic=True)
    np.testing.assert_allclose(first.action, expected, atol=1e-5)
    expected, _ = model.predict(obs[1], state=state, episode_start=np.array([False]), deterministic=True)
    np.testing.assert_allclose(
        predictor.act(frame.iloc[:41], {"step": 1}, state=first.state).action, expected, atol=1e-5
    )
    assert second.state is not None


# ------------------------------------------------------------------------------ the service
@pytest.fixture(scope="module")
def service(real):
    _, path, _ = real
    server = Server(path, "--max-bars", "50")
    yield server
    server.stop()


def btc_records(n: int) -> list[dict]:
    raw = pd.read_csv(FIXTURE)
    raw = raw[raw["asset"] == "BTCBitcoin"].tail(n)
    return [{"timestamp": day, "close": price} for day, price in zip(raw["date"], raw["price_usd"])]


def test_act_endpoint_answers_what_the_predictor_does(real, service) -> None:
    _, path, _ = real
    status, info = call(service.base, "/model/info")
    assert status == 200 and info["observation_spec"]["account_state"]["type"] == "TradingAccount"
    body = {"bars": btc_records(30), "account": {"cash": 10_000.0}}
    status, answer = call(service.base, "/act", body)
    assert status == 200, answer
    expected = Predictor.load(path).act(body["bars"], body["account"]).to_dict()
    assert answer["action"] == pytest.approx(expected["action"], abs=1e-6)
    for key in ("meaning", "decided_on_close_of", "fills_at_open_of", "bars_used", "account"):
        assert answer[key] == expected[key], key
    assert answer["decided_on_close_of"] == "2022-09-30T00:00:00+00:00"
    assert answer["fills_at_open_of"] == "2022-10-01T00:00:00+00:00"


def with_bar(k: int, **change) -> dict:
    bars = btc_records(30)
    bars[k] = {**bars[k], **change}
    return {"bars": bars}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"bars": btc_records(3)}, 422, r"bars: 3 given, but at least 6 bars \(window_size 5 \+ feature lookback 1\)"),
        (with_bar(3, close=None), 422, r"column 'close' has NaN at bars\[3\]"),
        (with_bar(3, close=-5.0), 422, r"non-positive price -5.0 at bars\[3\]"),
        (with_bar(3, timestamp="2022-09-01"), 422, r"out of order|duplicate|comes"),
        ({"bars": btc_records(30)[:10] + btc_records(30)[11:]}, 422, r"bars\[10\] .* comes 2 days"),
        (with_bar(2, price=1.0), 422, r"bars\.2\.price: Extra inputs are not permitted"),
        ({"bars": btc_records(10), "account": {"cash": "x"}}, 422, r"account\.cash must be"),
        ({"bars": btc_records(10), "account": {"coins": 1}}, 422, r"unknown field\(s\) coins"),
        ({"bars": btc_records(60)}, 413, r"60 bars exceed the limit of 50"),
        ({"bars": btc_records(10), "horizon": 3}, 422, r"horizon: Extra inputs are not permitted"),
    ],
)
def test_bad_act_requests_name_the_bar_or_field(service, body, status: int, message: str) -> None:
    got, answer = call(service.base, "/act", body)
    assert got == status, answer
    assert re.search(message, answer["detail"]), answer["detail"]
    assert call(service.base, "/act", {"bars": btc_records(10)})[0] == 200  # still serving


def test_act_is_covered_by_the_request_limits(service) -> None:
    """415 for a body that is not JSON, 413 for one over the limit, before anything is parsed."""
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        connection.request("POST", "/act", body=b'{"bars": []}', headers={"Content-Type": "text/plain"})
        response = connection.getresponse()
        assert response.status == 415 and "application/json" in json.loads(response.read())["detail"]
        huge = b'{"bars": [' + b" " * (4 << 20) + b"]}"
        connection.request("POST", "/act", body=huge, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["detail"]
    finally:
        connection.close()
