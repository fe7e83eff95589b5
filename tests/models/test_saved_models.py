"""Models saved by an earlier version keep loading and acting the same (``tests/fixtures/saved_models``).

The fixtures were written before the package's modules moved (one-way layers): each model file
carries pickled class paths (policies, extractors, observation spaces, replay buffers) that must
keep resolving, and each must give the actions it gave when it was saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saved_models"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
NAMES = sorted(name for name in MANIFEST if not name.startswith("_"))


def _expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as data:
        return {key: data[key] for key in data.files}


def _predict(model, name: str, expected: dict[str, np.ndarray]) -> np.ndarray:
    extra = {}
    if f"{name}/masks" in expected:
        extra["action_masks"] = expected[f"{name}/masks"]
    if name == "ppo_lstm":
        extra["episode_start"] = np.ones(len(expected[f"{name}/obs"]), dtype=bool)
    actions, _ = model.predict(expected[f"{name}/obs"], deterministic=True, **extra)
    return np.asarray(actions)


def _algorithm_class(name: str) -> type:
    import sb3_contrib
    import stable_baselines3

    import sb3_crypto

    algorithm = MANIFEST[name]["algorithm"]
    for module in (stable_baselines3, sb3_contrib, sb3_crypto):
        if hasattr(module, algorithm):
            return getattr(module, algorithm)
    raise AssertionError(f"no algorithm class {algorithm}")


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_loads_and_acts_as_when_saved(name: str) -> None:
    from sb3_crypto.algorithms.model_io import load_model

    expected = _expected()
    reference = expected[f"{name}/actions"]
    algorithm = _algorithm_class(name)
    # As users load them (the algorithm's class), and through the package's loader, which infers the
    # algorithm from the file (a D3QN file loads as the RainbowDQN it is a preset of).
    for model in (algorithm.load(FIXTURES / f"{name}.zip", device="cpu"), load_model(FIXTURES / f"{name}.zip")):
        assert isinstance(model, algorithm.__mro__[1] if name == "d3qn" else algorithm)
        actions = _predict(model, name, expected)
        if reference.dtype.kind == "f":
            np.testing.assert_allclose(actions, reference, rtol=0, atol=1e-6)
        else:
            np.testing.assert_array_equal(actions, reference)
        layout = getattr(model.observation_space, "layout", None)
        assert layout is not None and layout.size == model.observation_space.shape[0]


def test_saved_rainbow_replay_buffer_loads_with_its_priorities() -> None:
    from sb3_crypto.algorithms.model_io import load_model
    from sb3_crypto.common.buffers import PrioritizedReplayBuffer

    expected = _expected()
    model = load_model(FIXTURES / "rainbow.zip")
    model.load_replay_buffer(FIXTURES / "rainbow_replay_buffer.pkl")
    buffer = model.replay_buffer
    assert isinstance(buffer, PrioritizedReplayBuffer)
    assert buffer.size() == int(expected["rainbow/buffer_size"]) > 0
    np.testing.assert_array_equal(buffer.tree.leaves, expected["rainbow/buffer_priorities"])
    samples = buffer.sample(8)
    assert samples.observations.shape == (8, *model.observation_space.shape)
