"""The fast SAC's policy: SB3's ``SACPolicy`` with the same modules and ``state_dict``, plus

* PyTorch's fused Adam as the default optimizer (the same update in one kernel per list);
* ``set_training_mode`` over a kept list of the actor's and critic's modules (SB3 walks the module
  tree through ``Module.__setattr__`` for every prediction);
* an actor whose acting pass (no autograd, flat observations, ReLU trunk) calls ``F.linear``
  directly instead of the module tree and the distribution objects, with the same operations and
  random draws, so actions are identical; and whose gSDE ``reset_noise`` draws the same matrices
  without building an autograd graph.

Everything else (``get_action_dist_params``, ``action_log_prob``, export, loading) is SB3's. A model
saved with this policy loads in SB3's ``SAC`` too (the policy class is pickled by its path, so
``sb3_crypto`` must be importable).
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.distributions import StateDependentNoiseDistribution
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy
from torch import nn
from torch.nn import functional as F


class FastActor(Actor):
    """SB3's SAC ``Actor`` with a module-free acting pass (see the module doc)."""

    def _acting_layers(self) -> tuple | None:
        """``(trunk pairs, mean pair, clip, log-std pair or None)`` when the plain-tensor pass applies."""
        cached = self.__dict__.get("_acting_cache")
        if cached is not None and cached[0] is self.latent_pi and cached[1] is self.mu:
            return cached[2]
        layers = None
        modules = list(self.latent_pi)
        pattern_ok = all(type(m) is (nn.Linear if i % 2 == 0 else nn.ReLU) for i, m in enumerate(modules)) and (
            not modules or type(modules[-1]) is nn.ReLU
        )
        mean, clip = self.mu, None
        if isinstance(mean, nn.Sequential) and len(mean) == 2 and type(mean[1]) is nn.Hardtanh:
            mean, clip = mean[0], (float(mean[1].min_val), float(mean[1].max_val))
        log_std = None if self.use_sde else self.log_std
        if (
            pattern_ok
            and type(self.features_extractor) is FlattenExtractor
            and type(mean) is nn.Linear
            and (self.use_sde or type(log_std) is nn.Linear)
            and not (self.use_sde and self.use_expln)
        ):
            trunk = [(m.weight, m.bias) for m in modules if isinstance(m, nn.Linear)]
            std_pair = (log_std.weight, log_std.bias) if isinstance(log_std, nn.Linear) else None
            layers = (trunk, (mean.weight, mean.bias), clip, std_pair)
        self.__dict__["_acting_cache"] = (self.latent_pi, self.mu, layers)
        return layers

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        layers = None if th.is_grad_enabled() or not isinstance(obs, th.Tensor) else self._acting_layers()
        if layers is None or self._forward_hooks or self._forward_pre_hooks:
            return super().forward(obs, deterministic)
        trunk, (mean_weight, mean_bias), clip, std_pair = layers
        latent = obs.float().flatten(1)  # preprocess_obs (Box) and FlattenExtractor
        for weight, bias in trunk:
            latent = F.linear(latent, weight, bias).relu_()
        mean = F.linear(latent, mean_weight, mean_bias)
        if clip is not None:
            mean = F.hardtanh(mean, *clip)
        if deterministic:
            return th.tanh(mean)
        if self.use_sde:
            dist = self.action_dist
            assert isinstance(dist, StateDependentNoiseDistribution)
            if len(latent) == 1 or len(latent) != len(dist.exploration_matrices):
                noise = th.mm(latent, dist.exploration_mat)
            else:
                noise = th.bmm(latent.unsqueeze(dim=1), dist.exploration_matrices).squeeze(dim=1)
            return th.tanh(mean + noise)
        log_std = F.linear(latent, *std_pair).clamp_(LOG_STD_MIN, LOG_STD_MAX)
        std = th.ones_like(mean) * log_std.exp()
        return th.tanh(mean + th.empty_like(mean).normal_() * std)  # Normal(mean, std).rsample()

    #: Set by :class:`~sb3_crypto.sac.FastSAC` while it collects experience: the exploration matrices
    #: are then only used to act, so :meth:`reset_noise` draws them without an autograd graph.
    acting_noise = False

    def reset_noise(self, batch_size: int = 1) -> None:
        """gSDE's new exploration matrices. While :attr:`acting_noise` is set, the same draws as SB3's
        ``sample_weights`` without its two ``Normal`` objects and its graph through ``log_std`` (which
        SB3's own training step needs, so it is kept otherwise)."""
        dist = self.action_dist
        if not self.acting_noise or not isinstance(dist, StateDependentNoiseDistribution) or dist.use_expln:
            super().reset_noise(batch_size)
            return
        with th.no_grad():
            std = dist.get_std(self.log_std)
            dist.exploration_mat = th.empty_like(std).normal_() * std
            dist.exploration_matrices = th.empty((batch_size, *std.shape), dtype=std.dtype, device=std.device).normal_()
            dist.exploration_matrices.mul_(std)


class KeptModes:
    """Mixin for an SB3 ``SACPolicy``: ``set_training_mode`` (called for every prediction and every
    ``train``) over a kept list of the actor's and critic's modules instead of ``Module.train``'s
    walk of the module tree (``Module.__setattr__`` on each); the same modes result."""

    def set_training_mode(self, mode: bool) -> None:
        """SB3's (actor and critic modules to ``mode``), over a list of the modules kept while the actor
        and critic objects stay the same."""
        actor, critic = self.actor, self.critic  # type: ignore[attr-defined]
        kept = self.__dict__.get("_mode_modules")
        if kept is None or kept[0] is not actor or kept[1] is not critic:
            kept = (actor, critic, [*actor.modules(), *critic.modules()])
            self.__dict__["_mode_modules"] = kept
        for module in kept[2]:
            module.__dict__["training"] = mode
        self.__dict__["training"] = mode


class FastSACPolicy(KeptModes, SACPolicy):
    """SB3's ``SACPolicy`` for :class:`~sb3_crypto.sac.FastSAC`: same modules and ``state_dict``; fused
    Adam by default (``optimizer_kwargs=dict(fused=False)`` opts out); the actor is a
    :class:`FastActor`; ``set_training_mode`` without a module walk."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        optimizer_class = kwargs.get("optimizer_class", th.optim.Adam)
        if optimizer_class is th.optim.Adam:
            kwargs["optimizer_kwargs"] = {"fused": True, **(kwargs.get("optimizer_kwargs") or {})}
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> Actor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return FastActor(**actor_kwargs).to(self.device)


MlpPolicy = FastSACPolicy
