"""Rainbow DQN against SB3's DQN, measured in the same run.

Speed (default): environment steps per second of training (one gradient step of batch 64 per env
step, after ``learning_starts``), same trunk ``[128, 128]``, for SB3 DQN, D3QN + PER and full
Rainbow, on CartPole-v1 and on CryptoFuturesSession-v0. Ratios are printed against SB3 DQN.

Sample efficiency (``--sample-efficiency``): environment steps until the greedy policy's mean
return over 10 episodes reaches a threshold (CartPole: 475, the v1 "solved" level), evaluated every
1,000 steps, several seeds, Rainbow versus SB3 DQN with the same shared hyper-parameters; and on
the session env the steps until the greedy policy's mean PnL per validation session (after
costs) beats the best simple baseline, for SB3 DQN, D3QN + PER and Rainbow.

Run: ``python benchmarks/bench_rainbow_training.py [--steps 500 --rounds 12] [--sample-efficiency --seeds 3]``
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.monitor import Monitor

import sb3_crypto  # noqa: F401
from sb3_crypto.envs.futures import HOLD, LONG, SHORT, CryptoFuturesSessionEnv
from sb3_crypto.evaluation.sessions import evaluate_sessions, open_then_hold
from sb3_crypto.rainbow import D3QN, RainbowDQN

COMMON = {
    "learning_rate": 1e-3,
    "buffer_size": 50_000,
    "learning_starts": 1000,
    "batch_size": 64,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 500,
    "policy_kwargs": {"net_arch": [128, 128]},
}


def make(name: str, env_id: str, seed: int = 0):
    support = {"v_min": 0.0, "v_max": 100.0} if env_id == "CartPole-v1" else {"v_min": -0.2, "v_max": 0.2}
    if name == "SB3 DQN":
        return DQN("MlpPolicy", env_id, exploration_fraction=0.2, seed=seed, **COMMON)
    if name == "SB3 DQN fused Adam":  # what SB3 DQN gains from the optimizer RainbowDQN defaults to
        policy_kwargs = {**COMMON["policy_kwargs"], "optimizer_kwargs": {"fused": True}}
        return DQN(
            "MlpPolicy", env_id, exploration_fraction=0.2, seed=seed, **{**COMMON, "policy_kwargs": policy_kwargs}
        )
    if name == "D3QN + PER":
        return D3QN("MlpPolicy", env_id, exploration_fraction=0.2, seed=seed, **COMMON)
    return RainbowDQN("MlpPolicy", env_id, seed=seed, **support, **COMMON)


NAMES = ("SB3 DQN", "D3QN + PER", "Rainbow (all on)")
SPEED_NAMES = (*NAMES, "SB3 DQN fused Adam")


def speed(steps: int, rounds: int) -> None:
    """Each model is built and its buffer filled once; then ``rounds`` rounds time ``steps`` training
    steps of every model in turn. A round's ratios compare runs made seconds apart, so load from
    elsewhere on the machine (which swings single runs by +-20 % here) hits both sides alike; the
    median ratio over rounds is reported, with each model's median rate."""
    for env_id in ("CartPole-v1", "CryptoFuturesSession-v0"):
        models = {name: make(name, env_id) for name in SPEED_NAMES}
        for model in models.values():
            model.learn(COMMON["learning_starts"])  # fill the buffer first: only training steps are timed
        rates: dict[str, list[float]] = {name: [] for name in SPEED_NAMES}
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model.learn(steps, reset_num_timesteps=False)
                rates[name].append(steps / (time.perf_counter() - start))
        base = np.array(rates["SB3 DQN"])
        print(f"\n{env_id}: training env-steps/s (1 gradient step of 64 per env step), {rounds} rounds")
        print(f"  {'':<18}{'median':>9}{'ratio (median, min-max over rounds)':>44}")
        for name, rate in rates.items():
            ratios = np.array(rate) / base
            spread = f"{ratios.min():.2f}-{ratios.max():.2f}"
            print(f"  {name:<18}{np.median(rate):>9.0f}{np.median(ratios):>9.2f}x SB3 DQN  ({spread})")


def steps_to_threshold(name: str, seed: int, threshold: float, budget: int) -> int:
    model = make(name, "CartPole-v1", seed)
    stop = StopTrainingOnRewardThreshold(threshold, verbose=0)
    callback = EvalCallback(
        Monitor(gym.make("CartPole-v1")), callback_on_new_best=stop, eval_freq=1000, n_eval_episodes=10, verbose=0
    )
    model.learn(budget, callback=callback)
    return model.num_timesteps if callback.best_mean_reward >= threshold else budget + 1


class SessionPnLStop(BaseCallback):
    """Every ``every`` steps, the mean PnL per validation session of the greedy policy; stops training
    once it exceeds ``threshold`` (the session env's return threshold)."""

    def __init__(self, every: int, threshold: float) -> None:
        super().__init__()
        self.every, self.threshold, self.reached = every, threshold, False

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every:
            return True
        self.reached = float(np.mean(evaluate_sessions(self.model, split="validation"))) > self.threshold
        return not self.reached


def session_steps_to_profit(name: str, seed: int, budget: int, threshold: float = 0.0) -> int:
    model = make(name, "CryptoFuturesSession-v0", seed)
    stop = SessionPnLStop(every=1000, threshold=threshold)
    model.learn(budget, callback=stop)
    return model.num_timesteps if stop.reached else budget + 1


def cartpole_sample_efficiency(seeds: int) -> None:
    print("\nCartPole-v1: env steps until the 10-episode mean return reaches 475 (budget 50,000; '>' = not reached)")
    for name in ("SB3 DQN", "Rainbow (all on)"):
        results = [steps_to_threshold(name, seed, 475.0, 50_000) for seed in range(seeds)]
        shown = ", ".join(f">{r - 1}" if r > 50_000 else str(r) for r in results)
        print(f"  {name:<18}{shown}   median {np.median(results):.0f}")


def best_simple_baseline() -> float:
    """The best mean PnL per validation session of staying flat, long-and-hold and short-and-hold (the
    planted sessions lean long, so "profitable" alone is what opening long always achieves)."""
    offset = CryptoFuturesSessionEnv(split="validation").observation_layout.window_dim
    policies = (lambda obs: HOLD, open_then_hold(LONG, offset), open_then_hold(SHORT, offset))
    return max(float(np.mean(evaluate_sessions(policy, split="validation"))) for policy in policies)


def session_sample_efficiency(seeds: int, budget: int = 30_000) -> None:
    threshold = best_simple_baseline()
    print(
        f"\nCryptoFuturesSession-v0: env steps until the mean PnL per validation session (after costs) beats "
        f"the best of flat / long-and-hold / short-and-hold ({threshold:+.1f}), evaluated every 1,000 steps "
        f"(budget {budget:,}; '>' = not reached)"
    )
    for name in NAMES:
        results = [session_steps_to_profit(name, seed, budget, threshold) for seed in range(seeds)]
        shown = ", ".join(f">{r - 1}" if r > budget else str(r) for r in results)
        print(f"  {name:<18}{shown}   median {np.median(results):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--sample-efficiency", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--sessions-only", action="store_true", help="with --sample-efficiency: skip CartPole")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.sample_efficiency:
        if not args.sessions_only:
            cartpole_sample_efficiency(args.seeds)
        session_sample_efficiency(args.seeds)
    else:
        speed(args.steps, args.rounds)


if __name__ == "__main__":
    main()
