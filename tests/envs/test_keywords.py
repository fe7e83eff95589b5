"""Every env keyword is checked by name: wrong values raise TypeError / ValueError naming the keyword,
strings from YAML or a command line are converted where unambiguous, and nothing is silently wrong."""

from __future__ import annotations

import inspect
import math
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sb3_crypto  # noqa: F401
from sb3_crypto.data import DataError, keywords
from sb3_crypto.data.indicators import INDICATORS
from sb3_crypto.data.pipeline import FUNCTION_OPTIONS, SPEC_OPTIONS
from sb3_crypto.data.sessions import SESSION_MARKET_OPTIONS
from sb3_crypto.data.synthetic import SYNTHETIC_OPTIONS
from sb3_crypto.envs import S2_REWARD_WEIGHTS
from sb3_crypto.envs.base import MarketEnv
from sb3_crypto.envs.registration import ENV_IDS, env_class

#: Small, fast settings every example starts from (one keyword is then replaced).
BASE: dict[str, dict[str, Any]] = {
    "CryptoTrading-v0": {"synthetic_kwargs": {"n_bars": 800}, "window_size": 8, "episode_length": 24},
    "CryptoSpot-v0": {"synthetic_kwargs": {"n_bars": 800}, "window_size": 4, "episode_length": 24},
    "CryptoDCA-v0": {"synthetic_kwargs": {"n_bars": 400, "freq": "1D", "seed": 0}, "cycle_length": 5, "window_size": 5},
    "CryptoFuturesSession-v0": {"synthetic_kwargs": {"n_bars": 20_000}},
    "CryptoPortfolio-v0": {"synthetic_kwargs": {"n_assets": 3, "n_bars": 400}, "window_size": 8, "episode_length": 24},
}


def env_keywords(cls: type) -> list[str]:
    """The keywords of an env class: its own, plus the market keywords of ``MarketEnv`` when it passes
    ``**market_kwargs`` on."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_KEYWORD for p in parameters) and issubclass(cls, MarketEnv):
        market = list(inspect.signature(MarketEnv.__init__).parameters.values())[1:]
        names += [p.name for p in market if p.name not in names and p.kind is not p.VAR_KEYWORD]
    return names


CASES = [(env_id, name) for env_id in sorted(ENV_IDS) for name in env_keywords(env_class(env_id))]

#: Wrong (and a few accidentally right) values of every kind.
BAD_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "abc",
            "nan",
            "inf",
            "-inf",
            "-1",
            "0",
            "1",
            "2",
            "0.5",
            "-0.5",
            "1e309",
            "1e3",
            "256",
            "true",
            "false",
            "yes",
            "no",
            "none",
            "null",
            "synthetic",
            "train",
            "all",
            "log_return",
            "1,2,3",
            "0.5,0.5,0",
            "2020-01-05",
            "2099-01-01,2100-01-01",
            "/",
            ".",
            "\x00",
            "x" * 5000,
        ]
    ),
    st.sampled_from(
        [math.nan, math.inf, -math.inf, 0, 0.0, -0.0, 1, -1, 2, 0.5, 1.5, 1e300, -1e300, 10**30, 2**63, 5e-324]
    ),
    st.sampled_from([True, False, None, b"bytes", 1 + 2j, object(), pd.Timestamp("2020-01-05")]),
    st.sampled_from([np.float32("nan"), np.int64(-3), np.bool_(True), np.array([1.0, 2.0]), np.float64(1e308)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(-2, 2), st.text(max_size=4)), max_size=4),
    st.lists(st.sampled_from(["2020-01-05", "2020-01-20", "2020-03-01", "2019-12-01", "x"]), max_size=3).map(tuple),
    st.dictionaries(
        st.text(max_size=6), st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=4)), max_size=3
    ),
)


def names(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as a whole word."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def assert_sound(env: Any) -> None:
    """A constructed env must work: finite rewards, observations inside the observation space."""
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs), obs
    for _ in range(30):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert math.isfinite(reward), reward
        assert env.observation_space.contains(obs), obs
        if "equity" in info:
            assert math.isfinite(info["equity"])
        if terminated or truncated:
            break


@pytest.mark.parametrize(("env_id", "name"), CASES, ids=[f"{env_id}-{name}" for env_id, name in CASES])
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=BAD_VALUES)
def test_wrong_values_are_refused_naming_the_keyword(env_id: str, name: str, value: Any) -> None:
    cls = env_class(env_id)
    kwargs = {**BASE[env_id], name: value}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow or NaN on the way is a bug too
        try:
            env = cls(**kwargs)
        except (TypeError, ValueError) as exc:  # DataError is a ValueError
            message = str(exc)
            assert names(message, name) or (name == "data" and str(value) in message), (
                f"{type(exc).__name__} for {name}={value!r} does not name it: {message}"
            )
            return
        assert_sound(env)


#: Options inside the nested keywords the envs consume: (env id, keyword, option, the env's base settings).
NESTED = (
    [("CryptoTrading-v0", "synthetic_kwargs", key, {}) for key in SYNTHETIC_OPTIONS]
    + [("CryptoFuturesSession-v0", "synthetic_kwargs", key, {}) for key in SESSION_MARKET_OPTIONS]
    + [("CryptoTrading-v0", "reward_weights", key, {"reward": "multi"}) for key in S2_REWARD_WEIGHTS]
    + [(env_id, "features", key, {}) for env_id in ("CryptoTrading-v0", "CryptoDCA-v0") for key in SPEC_OPTIONS]
)
#: As BAD_VALUES, with integers small enough that an accepted bar count stays quick to generate.
NESTED_VALUES = st.one_of(
    BAD_VALUES.filter(lambda value: not (isinstance(value, int) and 5_000 < value < 10**7)),
    st.integers(min_value=-5, max_value=5_000),
)


@pytest.mark.parametrize(
    ("env_id", "keyword", "option", "extra"),
    NESTED,
    ids=[f"{env_id}-{keyword}-{option}" for env_id, keyword, option, _ in NESTED],
)
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=NESTED_VALUES)
def test_wrong_nested_options_are_refused_naming_them(
    env_id: str, keyword: str, option: str, extra: dict, value: Any
) -> None:
    base = {**BASE[env_id], **extra}
    kwargs = {**base, keyword: {**base.get(keyword, {}), option: value}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            env = env_class(env_id)(**kwargs)
        except (TypeError, ValueError) as exc:
            message = str(exc)
            assert names(message, keyword) or names(message, option), (
                f"{type(exc).__name__} for {keyword}[{option!r}]={value!r} names neither: {message}"
            )
            return
        assert_sound(env)


#: Every parameter of every built-in indicator (and its timeframe), and every option of a user-function
#: item: (the item without the option, the option).
ITEMS = [
    ({"name": name}, key) for name, indicator in INDICATORS.items() for key in (*indicator.parameters, "timeframe")
]
ITEMS += [({"function": "helpers:close_feature"}, key) for key in FUNCTION_OPTIONS if key != "function"]


@pytest.mark.parametrize(("entry", "option"), ITEMS, ids=[f"{next(iter(e.values()))}-{o}" for e, o in ITEMS])
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=NESTED_VALUES)
def test_wrong_feature_item_options_are_refused_naming_them(entry: dict, option: str, value: Any) -> None:
    """Random values for one option of one ``features['indicators']`` item: a sound env or an error
    naming ``features`` (the item's position) or the option."""
    kwargs = {**BASE["CryptoTrading-v0"], "features": {"indicators": [{**entry, option: value}]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            env = env_class("CryptoTrading-v0")(**kwargs)
        except (TypeError, ValueError) as exc:
            message = str(exc)
            assert names(message, "features") or names(message, option), (
                f"{type(exc).__name__} for {entry} {option}={value!r} names neither: {message}"
            )
            return
        assert_sound(env)


def test_every_registered_id_is_covered() -> None:
    assert set(BASE) == set(ENV_IDS)
    assert {"fee", "reward_scale", "allow_short", "split_dates", "data"} <= {
        n for e, n in CASES if e == "CryptoTrading-v0"
    }


# ---------------------------------------------------------------------------------------------- hand tests
def trading(**kwargs: Any) -> Any:
    return env_class("CryptoTrading-v0")(**{**BASE["CryptoTrading-v0"], **kwargs})


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("False", False), ("no", False), ("0", False)])
def test_boolean_strings_are_converted(text: str, expected: bool) -> None:
    env = trading(allow_short=text)
    assert env.allow_short is expected and env.ledger.allow_short is expected
    assert trading(allow_short="true").allow_short is True
    with pytest.raises(ValueError, match=r"allow_short must be a boolean .*got 'maybe' \(str\)"):
        trading(allow_short="maybe")


def test_numeric_strings_are_converted_and_give_the_same_env() -> None:
    as_text = trading(fee="0.001", slippage="5e-4", window_size="8", episode_length="24", reward_scale="1")
    as_numbers = trading(fee=0.001, slippage=0.0005)
    assert as_text.ledger.fee_rate == 0.001 and as_text.window_size == 8 and as_text.episode_length == 24
    for env in (as_text, as_numbers):
        env.reset(seed=3)
    action = np.array([0.7], dtype=np.float32)
    for _ in range(10):
        a, b = as_text.step(action), as_numbers.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]
    assert trading(episode_length="none", split="test").episode_length is None


@pytest.mark.parametrize(
    ("keyword", "value", "pattern"),
    [
        ("fee", "abc", r"^fee must be a number in \[0, 1\), got 'abc' \(str\)$"),
        ("fee", "0.001x", r"^fee must be a number in \[0, 1\), got '0.001x' \(str\)$"),
        ("leverage", "1e3", r"^leverage must be a number in \(0, 100\], got '1e3' \(str\)$"),
        ("window_size", "eight", r"^window_size must be an integer >= 1, got 'eight' \(str\)$"),
        ("window_size", 2.5, r"^window_size must be an integer >= 1, got 2.5 \(float\)$"),
        ("reward_scale", math.nan, r"^reward_scale must be a number in \(0, 1000000\], got nan \(float\)$"),
        ("reward_scale", 0, r"reward_scale must be a number in \(0, "),
        ("max_drawdown", 1.5, r"^max_drawdown must be a number in \(0, 1\), got 1.5 \(float\)$"),
        ("initial_cash", 0, r"^initial_cash must be a number in \[1e-06, 1e\+15\], got 0 \(int\)$"),
        ("fee", True, r"^fee must be a number in \[0, 1\), got True \(bool\)$"),
        ("fee", [0.1], r"^fee must be a number in \[0, 1\), got \[0.1\] \(list\)$"),
        ("max_position", 2.0, r"^max_position must be a number in \(0, leverage\], got 2.0 with leverage=1.0$"),
        ("action_scheme", None, r"^action_scheme must be one of 'target', 'direction_size_confidence', got None"),
    ],
)
def test_wrong_values_name_keyword_value_and_range(keyword: str, value: Any, pattern: str) -> None:
    with pytest.raises((TypeError, ValueError), match=pattern):
        trading(**{keyword: value})


def test_zero_money_is_refused_in_every_env() -> None:
    with pytest.raises(ValueError, match=r"initial_cash must be a number in \[1e-06, 1e\+15\], got 0 \(int\)"):
        trading(initial_cash=0)
    with pytest.raises(ValueError, match=r"initial_balance must be a number in \[1e-06, "):
        env_class("CryptoFuturesSession-v0")(**BASE["CryptoFuturesSession-v0"], initial_balance=0.0)
    with pytest.raises(ValueError, match=r"budget must be a number in \[1e-06, "):
        env_class("CryptoDCA-v0")(**BASE["CryptoDCA-v0"], budget=0)
    spot = env_class("CryptoSpot-v0")
    with pytest.raises(ValueError, match="initial_cash and initial_coins are both 0"):
        spot(**BASE["CryptoSpot-v0"], initial_cash=0, initial_coins=0)
    assert spot(**BASE["CryptoSpot-v0"], initial_cash=0).ledger.initial_position == 1.0  # coins alone are fine


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_nan_reward_scale_or_fee_is_refused_wherever_it_exists(env_id: str) -> None:
    cls = env_class(env_id)
    present = [k for k in ("reward_scale", "fee", "commission", "slippage") if k in env_keywords(cls)]
    assert present
    for keyword in present:
        with pytest.raises(ValueError, match=rf"^{keyword} must be a number in .*, got nan \(float\)$"):
            cls(**{**BASE[env_id], keyword: math.nan})


def test_split_dates_outside_the_data_are_refused_with_its_span() -> None:
    first, last = "2020-01-01T00:00:00+00:00", "2020-02-03T07:00:00+00:00"  # 800 hourly bars
    for dates in [("2030-01-01", "2031-01-01"), ("2020-01-20", "2030-01-01"), ("2019-01-01", "2020-01-20")]:
        with pytest.raises(
            ValueError, match=rf"split_dates=.* the data run from {re.escape(first)} to {re.escape(last)}"
        ):
            trading(split_dates=dates)
    with pytest.raises(ValueError, match=r"split_dates must increase"):
        trading(split_dates=("2020-01-25", "2020-01-20"))
    with pytest.raises(ValueError, match=r"split_dates\[1\] must be a date or time"):
        trading(split_dates=("2020-01-20", "soon"))
    with pytest.raises((TypeError, ValueError), match=r"split_dates must be a list of 2 dates"):
        trading(split_dates=("2020-01-20",))
    env = trading(split_dates=["2020-01-20", "2020-01-27"], split="test", episode_length=None)
    start, stop = env.market.split_range("test")
    assert env.market.times[start] == pd.Timestamp("2020-01-27", tz="UTC") and stop == 800


def test_nested_options_name_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"synthetic_kwargs has unknown option\(s\) 'n_barz'; known: n_bars"):
        trading(synthetic_kwargs={"n_barz": 500})
    with pytest.raises(ValueError, match=r"synthetic_kwargs\['n_bars'\] must be an integer in \[2, 10000000\]"):
        trading(synthetic_kwargs={"n_bars": -5})
    with pytest.raises(
        ValueError, match=r"synthetic_kwargs\['annual_vol'\] must be a number in \[0.0001, 10\], got nan"
    ):
        trading(synthetic_kwargs={"n_bars": 800, "annual_vol": math.nan})
    with pytest.raises(ValueError, match=r"reward_weights has unknown option\(s\) 'sharpe'"):
        trading(reward="multi", reward_weights={"sharpe": 1.0})
    with pytest.raises(ValueError, match=r"reward_weights\['cost'\] must be a number in \[0, 1000000\], got -1"):
        trading(reward="multi", reward_weights={"cost": -1})
    with pytest.raises(ValueError, match=r"reward_weights is only used with reward='multi'"):
        trading(reward_weights={"cost": 1.0})
    futures = env_class("CryptoFuturesSession-v0")
    with pytest.raises(ValueError, match=r"synthetic_kwargs has unknown option\(s\) 'spikes'"):
        futures(synthetic_kwargs={"spikes": 3})
    with pytest.raises(ValueError, match=r"synthetic_kwargs given but data is not 'synthetic'"):
        futures(data=pd.DataFrame(), synthetic_kwargs={"n_bars": 100})
    with pytest.raises(ValueError, match=r"asset='BTC' given but data is 'synthetic'"):
        trading(asset="BTC")


def test_data_of_the_wrong_kind_names_data_or_the_file() -> None:
    with pytest.raises(TypeError, match=r"^data must be 'synthetic', a file path or a DataFrame, got None"):
        trading(data=None)
    with pytest.raises(DataError, match=r"^no/such\.csv: file not found"):
        trading(data="no/such.csv", synthetic_kwargs=None)
    with pytest.raises(DataError, match=r"file not found"):
        trading(data=".", synthetic_kwargs=None)  # a folder is no data file
    with pytest.raises(TypeError, match=r"^data must be 'synthetic', a session file"):
        env_class("CryptoFuturesSession-v0")(data=3.5)


def test_ruin_keeps_the_observation_inside_its_space() -> None:
    """Found by the property test: with a huge (but valid) slippage the account is ruined within two
    steps and equity goes far below 0; the observation's drawdown stays inside the space's bound."""
    env = trading(slippage=0.96875)
    env.reset(seed=0)
    terminated = False
    for action in ([0.27], [-0.46], [1.0], [-1.0]):
        obs, reward, terminated, _, info = env.step(np.array(action, dtype=np.float32))
        assert env.observation_space.contains(obs)
        if terminated:
            break
    assert terminated and reward == -20.0 and info["drawdown"] > env.obs_bound  # info keeps the true value


def test_keyword_module_conversions() -> None:
    assert keywords.real("x", "0.001", low=0.0, high=1.0) == 0.001
    assert keywords.real("x", np.float32(0.5)) == 0.5 and type(keywords.real("x", 1)) is float
    assert keywords.integer("n", "256", low=1) == 256 and keywords.integer("n", 32.0) == 32
    assert keywords.integer("n", np.int64(7)) == 7
    assert [keywords.boolean("b", v) for v in ("yes", "NO", " on ", "off", 1, 0, np.bool_(True))] == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
    ]
    assert keywords.optional_real("x", "null") is None and keywords.optional_integer("n", None) is None
    assert keywords.fractions("f", "0.5, 0.25, 0.25") == (0.5, 0.25, 0.25)
    assert keywords.choice("c", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^unknown c 'z': c must be one of 'a', 'b'$"):
        keywords.choice("c", "z", ("a", "b"))
    with pytest.raises(TypeError, match=r"^b must be a boolean"):
        keywords.boolean("b", [True])
    with pytest.raises(ValueError, match=r"^b must be a boolean"):
        keywords.boolean("b", 2)
    with pytest.raises(ValueError, match=r"^x must be a number in \[0, 1\), got 10\*\*400|^x must be a number"):
        keywords.real("x", 10**400, low=0.0, high=1.0)
    with pytest.raises(ValueError, match=r"^f must be 3 non-negative numbers summing to 1, got \[0.5, 0.6, 0\]"):
        keywords.fractions("f", [0.5, 0.6, 0])
    with pytest.raises(TypeError, match=r"^o must be a mapping of options"):
        keywords.options("o", [1], {"a": keywords.real})
