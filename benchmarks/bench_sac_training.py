"""FastSAC against SB3's SAC (and sbx's, when installed), measured in the same run.

Environment steps per second while training on ``CryptoTrading-v0`` with ``hyperparams/sac.yml``'s
settings (batch 256, ``[128, 128]``, 4 gradient steps every 4 env steps, tau 0.01, gamma 0.95,
buffer 100k, the yml's env), one torch thread, with and without gSDE. Each model is built once and
its buffer filled (the 1,000 warm-up steps); then every round times ``--steps`` training steps of
each model in turn, and each model's rate is divided by SB3 SAC's in the same round. The table gives
each model's median rate and the median (min-max) of its per-round ratios.

Models (``--stages`` adds the intermediate ones, for what each part of the fast path buys):

* ``SB3 SAC``: ``stable_baselines3.SAC``;
* ``FastSAC, SB3 train``: FastSAC with ``fast=False`` (its policy: acting pass, no module walks,
  fused Adam; SB3's training step);
* ``FastSAC, torch products``: the fast training step with PyTorch's (MKL) matrix products;
* ``FastSAC``: everything on (oneDNN products on the CPU);
* ``sbx SAC`` (no gSDE: sbx has none): ``sbx.SAC`` (JAX), when ``import sbx`` works; XLA is held
  to one thread like torch.

``--env CryptoPortfolio-v0`` trains on the multi-asset env with the yml's entry for it, all of it:
EIIE's per-asset policy (``sb3_crypto.policies.EiieAssetwiseSACPolicy``), batch 64, one gradient
step per env step, the 4-asset synthetic panel. That policy has no gSDE (in SB3 either), so only the
plain SAC rows run. ``--mlp`` keeps ``CryptoTrading-v0``'s algorithm settings and ``MlpPolicy`` on
the portfolio env instead (with and without gSDE); ``--env-defaults`` then uses the env's own
defaults (8 assets, 32-bar windows: an observation of 1,545 values, an action of 9 logits) instead
of the entry's env keyword arguments.

Run: ``python benchmarks/bench_sac_training.py [--env CryptoTrading-v0 --steps 500 --rounds 10 --stages --no-sbx]``
or ``python benchmarks/bench_sac_training.py --env CryptoPortfolio-v0 [--mlp [--env-defaults]]``
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from pathlib import Path
from typing import Any

# One thread for XLA too (set before jax is imported, if sbx is).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3 import SAC

import sb3_crypto  # noqa: F401
from sb3_crypto.sac import FastSAC

CONFIG = Path(__file__).resolve().parents[1] / "hyperparams" / "sac.yml"


ENV_ID = "CryptoTrading-v0"
MLP = False  # --mlp: CryptoTrading-v0's algorithm settings and MlpPolicy on ENV_ID
ENV_DEFAULTS = False  # --env-defaults: the env's own defaults instead of the yml entry's env kwargs


def settings() -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(policy, algorithm kwargs, env kwargs)`` from ``sac.yml``'s entry for ``ENV_ID`` (constant
    learning rate: the schedule does not change the cost of a step); with ``MLP``, the
    ``CryptoTrading-v0`` entry's policy and algorithm settings with ``ENV_ID``'s env kwargs."""
    config = yaml.safe_load(CONFIG.read_text())
    params = dict(config["CryptoTrading-v0" if MLP else ENV_ID])
    env_kwargs = params.pop("env_kwargs")
    if MLP and ENV_ID != "CryptoTrading-v0":
        env_kwargs = {} if ENV_DEFAULTS else dict(config.get(ENV_ID, {}).get("env_kwargs", {}))
    policy = params.pop("policy")
    if "." in policy:  # a dotted name (RL Zoo imports it)
        module, _, name = policy.rpartition(".")
        policy = getattr(importlib.import_module(module), name)
    for key in ("n_timesteps", "use_sde", "sde_sample_freq"):
        params.pop(key, None)
    rate = params.pop("learning_rate")
    params["learning_rate"] = float(rate.split("_")[1]) if isinstance(rate, str) else rate
    params["policy_kwargs"] = eval(params["policy_kwargs"])  # RL Zoo's convention for this key
    return policy, params, env_kwargs


def sde_supported() -> bool:
    """Whether the benchmarked policy has gSDE (EIIE's per-asset heads do not, in SB3 either)."""
    policy, _, _ = settings()
    return isinstance(policy, str)


def make(name: str, use_sde: bool, seed: int = 0) -> Any:
    policy, params, env_kwargs = settings()
    env = gym.make(ENV_ID, **env_kwargs)
    sde = {"use_sde": use_sde, "sde_sample_freq": 64} if use_sde else {}
    if name == "sbx SAC":
        from sbx import SAC as SbxSAC

        kwargs = {k: v for k, v in params.items() if k != "policy_kwargs"}
        return SbxSAC(
            "MlpPolicy", env, policy_kwargs={"net_arch": params["policy_kwargs"]["net_arch"]}, seed=seed, **kwargs
        )
    if name == "SB3 SAC":
        return SAC(policy, env, seed=seed, **sde, **params)
    model = FastSAC(policy, env, seed=seed, fast=name != "FastSAC, SB3 train", **sde, **params)
    if name == "FastSAC, torch products":
        model.fast_options = {"onednn": False}
    return model


def sbx_available() -> bool:
    try:
        import sbx  # noqa: F401
    except ImportError:
        return False
    return True


def speed(steps: int, rounds: int, stages: bool, with_sbx: bool) -> None:
    for use_sde in (False, True) if sde_supported() else (False,):
        names = ["SB3 SAC"]
        if stages:
            names += ["FastSAC, SB3 train", "FastSAC, torch products"]
        names.append("FastSAC")
        if with_sbx and not use_sde and sde_supported():  # (sbx has MlpPolicy only)
            names.append("sbx SAC")
        models = {name: make(name, use_sde) for name in names}
        for model in models.values():
            model.learn(model.learning_starts + 4 * steps // 10)  # warm-up, first trainings (and JIT) untimed
        rates: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model.learn(steps, reset_num_timesteps=False)
                rates[name].append(steps / (time.perf_counter() - start))
        base = np.array(rates["SB3 SAC"])
        label = "SAC + gSDE" if use_sde else "SAC"
        policy, params, _ = settings()
        what = f"{getattr(policy, '__name__', policy)}, batch {params['batch_size']}, train_freq {params['train_freq']}"
        print(f"\n{ENV_ID}, {label}: training env-steps/s (sac.yml: {what}), {rounds} rounds of {steps} steps")
        print(f"  {'':<26}{'median':>8}{'ratio to SB3 SAC (median, min-max over rounds)':>52}")
        for name, rate in rates.items():
            ratios = np.array(rate) / base
            spread = f"{ratios.min():.2f}-{ratios.max():.2f}"
            print(f"  {name:<26}{np.median(rate):>8.0f}{np.median(ratios):>9.2f}x  ({spread})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="CryptoTrading-v0", choices=["CryptoTrading-v0", "CryptoPortfolio-v0"])
    parser.add_argument(
        "--mlp", action="store_true", help="CryptoTrading-v0's algorithm settings and MlpPolicy on --env"
    )
    parser.add_argument(
        "--env-defaults",
        action="store_true",
        help="with --mlp: the env's default keyword arguments, not the yml entry's",
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--stages", action="store_true", help="also the intermediate FastSAC variants")
    parser.add_argument("--no-sbx", action="store_true", help="leave sbx out even when installed")
    args = parser.parse_args()
    global ENV_ID, MLP, ENV_DEFAULTS
    if args.env_defaults and not args.mlp:
        parser.error("--env-defaults goes with --mlp (the yml entry's own policy is built for its env kwargs)")
    ENV_ID, MLP, ENV_DEFAULTS = args.env, args.mlp, args.env_defaults
    th.set_num_threads(1)
    with_sbx = not args.no_sbx and sbx_available()
    if not args.no_sbx and not with_sbx:
        print("sbx not importable: `pip install sbx-rl` (JAX) in a separate environment to compare with it")
    speed(args.steps, args.rounds, args.stages, with_sbx)


if __name__ == "__main__":
    main()
