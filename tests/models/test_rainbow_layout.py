"""The layout of ``sb3_crypto.rainbow``: ``noise_off``, the names ``sb3_crypto.rainbow.policies`` still
exports after its split, the pickled class paths, and the import direction between the modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

import sb3_crypto.rainbow as rainbow_package
from sb3_crypto.rainbow import fused_loss, layers, network, optim, policies, rainbow
from sb3_crypto.rainbow.network import RainbowQNetwork, noise_off


def _noisy_q_net(n_atoms: int = 11) -> RainbowQNetwork:
    th.manual_seed(0)
    policy = policies.RainbowPolicy(
        spaces.Box(-1.0, 1.0, (6,), np.float32),
        spaces.Discrete(3),
        lambda _: 1e-3,
        net_arch=[16, 16],
        noisy=True,
        n_atoms=n_atoms,
        v_min=-5.0,
        v_max=5.0,
    )
    return policy.q_net


def _noise_flags(q_net: RainbowQNetwork) -> list[bool]:
    return [layer.noise_enabled for layer in q_net.noisy_layers()]


@pytest.mark.parametrize("n_atoms", [1, 11])
def test_noise_off_uses_the_mean_weights_inside_the_block_and_restores_the_noise(n_atoms: int) -> None:
    q_net = _noisy_q_net(n_atoms)
    obs = th.randn(8, 6)
    with th.no_grad():
        # Outside the block the noise is on: a new draw changes the output.
        q_net.reset_noise()
        noisy_first = q_net(obs)
        q_net.reset_noise()
        noisy_second = q_net(obs)
        assert not th.allclose(noisy_first, noisy_second)
        with noise_off(q_net):
            assert not any(_noise_flags(q_net))
            first = q_net(obs)
            q_net.reset_noise()  # a draw does not matter with the noise off
            second = q_net(obs)
        assert th.equal(first, second)
        assert not th.allclose(first, noisy_second)
        # On again after the block, with the draw made inside it.
        assert all(_noise_flags(q_net))
        assert th.equal(q_net(obs), q_net(obs))
        q_net.reset_noise()
        assert not th.allclose(q_net(obs), first)

        with pytest.raises(RuntimeError, match="inside"), noise_off(q_net):
            assert not any(_noise_flags(q_net))
            raise RuntimeError("inside the block")
        assert all(_noise_flags(q_net))


def test_noise_off_is_a_no_op_without_set_noise() -> None:
    plain = nn.Linear(3, 2)
    with noise_off(plain):
        pass
    assert not hasattr(plain, "set_noise")
    assert rainbow_package.noise_off is noise_off
    assert "noise_off" in rainbow_package.__all__


#: Every top-level definition of ``sb3_crypto/rainbow/policies.py`` before the split, with its module now.
MOVED_FROM_POLICIES = {
    "LayerWeights": layers,
    "_scaled_noise": layers,
    "resample_noise": layers,
    "NoisyLinear": layers,
    "RainbowQNetwork": network,
    "_categorical_forward": fused_loss,
    "_categorical_backward": fused_loss,
    "_gradient_slot": fused_loss,
    "FusedCategoricalLoss": fused_loss,
    "RainbowPolicy": policies,
    "MlpPolicy": policies,
}


@pytest.mark.parametrize("name", sorted(MOVED_FROM_POLICIES))
def test_every_former_policies_name_is_still_importable(name: str) -> None:
    # ``from sb3_crypto.rainbow.policies import name``, for a name given as a string
    imported = getattr(importlib.import_module("sb3_crypto.rainbow.policies"), name)
    assert imported is getattr(MOVED_FROM_POLICIES[name], name)


def test_pickled_class_paths_and_the_package_exports_stay() -> None:
    assert policies.RainbowPolicy.__module__ == "sb3_crypto.rainbow.policies"
    assert policies.MlpPolicy is policies.RainbowPolicy
    assert rainbow.RainbowDQN.__module__ == "sb3_crypto.rainbow.rainbow"
    assert rainbow.D3QN.__module__ == "sb3_crypto.rainbow.rainbow"
    assert network.LayerWeights is layers.LayerWeights
    assert rainbow._AdamSteps is optim._AdamSteps
    for name in rainbow_package.__all__:
        assert getattr(rainbow_package, name) is not None


#: The ``sb3_crypto`` modules each rainbow module may import (only downward, no cycles).
ALLOWED_IMPORTS = {
    "layers": set(),
    "fused_loss": {"sb3_crypto.rainbow.layers"},
    "network": {"sb3_crypto.rainbow.layers", "sb3_crypto.rainbow.fused_loss"},
    "policies": {"sb3_crypto.rainbow.layers", "sb3_crypto.rainbow.fused_loss", "sb3_crypto.rainbow.network"},
    "optim": {"sb3_crypto.common.optim"},
    "rainbow": {
        "sb3_crypto.common.buffers",
        "sb3_crypto.rainbow.layers",
        "sb3_crypto.rainbow.optim",
        "sb3_crypto.rainbow.policies",
    },
}


@pytest.mark.parametrize("module", sorted(ALLOWED_IMPORTS))
def test_rainbow_modules_import_only_downward(module: str) -> None:
    path = Path(importlib.import_module(f"sb3_crypto.rainbow.{module}").__file__)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sb3_crypto"):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name.startswith("sb3_crypto")}
    assert imported <= ALLOWED_IMPORTS[module]
