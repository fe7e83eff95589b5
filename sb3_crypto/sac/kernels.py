"""Compiled (numba) CPU kernels for the fast SAC's action heads: the squashed Gaussian and gSDE
log-probabilities and their gradients, one loop each instead of ~25-40 small tensor operations.

Measured on the project machine (batch 256, one action): the torch-operation heads
(:mod:`sb3_crypto.sac.networks`) cost 190 us (squashed Gaussian) and 376 us (gSDE) per gradient
step, forward and backward, almost all of it per-operation overhead on ``(512, 1)`` tensors.

Precision: numba's ``float()`` of a float32 element stays float32, so products of the float32
inputs are float32 as in SB3's tensors, while the ``math`` functions, float64 constants and the
per-row sums are float64. Where SB3's float32 rounding decides a value, the kernels round the
same way on purpose: the actions (the squashing correction depends on them), and the squashed
Gaussian's sample ``mean + noise * std`` (:func:`_sample`). The squashed Gaussian's arithmetic is
otherwise that of the torch head (which follows SB3's operations); its backward kernel also does
the head's small matrix products (action dimension wide) and the ReLU mask of the latent, and
writes the head parameters' gradients in place.
gSDE's kernels do only what torch's vectorised operations do not do well: the per-row sums of the
log-probabilities (one logarithm of a product per row for the scale and the squashing correction)
and the element-wise gradients, from the forward's float32 values (the action, its clamped inverse
and that inverse's ``tanh``, computed by torch with SB3's operations). The products with the latent
go to torch (the (action, width) ones with the row-major latent as the fast operand). For a
five-wide action that took the head from 234 + 224 us (forward + backward) to 118 + 86 us per step.
``tests/models`` holds both implementations to SB3's autograd, and the compiled heads to the
torch ones on saturated actions and at the log-std clamps.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
_BOUND = 1.0 - float(np.finfo(np.float32).eps)  # TanhBijector.inverse's clamp
_LOG_STD_MIN = -20.0
_LOG_STD_MAX = 2.0


@numba.njit(cache=True, nogil=True)
def _scaled(product, total):  # pragma: no cover - compiled
    """``(product, total)`` with ``log(product)`` moved into ``total`` before ``product`` (of factors
    in (1e-7, 1e38]) can leave float64's range."""
    if product < 1e-200 or product > 1e200:
        return 1.0, total + math.log(product)
    return product, total


@numba.njit(cache=True, nogil=True)
def _sample(mean, noise, std):  # pragma: no cover - compiled
    """``rsample``'s ``mean + noise * std`` rounded to float32 as SB3's tensors round it: with a tiny
    std (a log-std near its clamp of -20) the sum is the mean itself, and the log-probability's
    ``(x - mean)^2 / (2 std^2)`` is then 0 in SB3, not ``noise^2 / 2``."""
    return float(np.float32(mean + float(np.float32(noise * std))))


@numba.njit(cache=True, nogil=True)
def gaussian_forward(mean, raw_log_std, noise, actions, log_probs, epsilon):  # pragma: no cover - compiled
    """Squashed Gaussian: ``actions = tanh(mean + noise * std)``, ``std = exp(clamp(raw_log_std))``,
    and each row's log-probability with SB3's squashing correction (``log(std)`` is the clamped
    log-std itself; the corrections' logarithm is taken once per row, of their product)."""
    rows, dims = mean.shape
    for r in range(rows):
        gaussian_part = 0.0
        corrections, log_corrections = 1.0, 0.0
        for j in range(dims):
            log_std = min(max(float(raw_log_std[r, j]), _LOG_STD_MIN), _LOG_STD_MAX)
            std = float(np.float32(math.exp(log_std)))
            m = float(mean[r, j])
            x = _sample(m, float(noise[r, j]), std)
            a = np.float32(math.tanh(x))
            actions[r, j] = a
            d = x - m
            gaussian_part += -(d * d) / (2.0 * std * std) - log_std - _LOG_SQRT_2PI
            af = float(a)
            corrections, log_corrections = _scaled(corrections * (1.0 - af * af + epsilon), log_corrections)
        log_probs[r] = gaussian_part - (log_corrections + math.log(corrections))


@numba.njit(cache=True, nogil=True)
def gaussian_backward(
    mean,
    raw_log_std,
    noise,
    actions,
    grad_actions,
    grad_log_prob,
    latent,
    mean_weight,
    std_weight,
    mask,
    grad_latent,
    grad_mean_weight,
    grad_mean_bias,
    grad_std_weight,
    grad_std_bias,
    epsilon,
):  # pragma: no cover - compiled
    """Gradients of ``sum(grad_actions * actions) + grad_log_prob * sum(log_probs)`` for the first
    ``len(grad_actions)`` rows: the mean and log-std layers' (written in place) and the latent's
    (``grad_latent``, zero where the ReLU latent is not positive when ``mask``)."""
    rows, dims = grad_actions.shape
    width = latent.shape[1]
    acc_mean_w = np.zeros((dims, width))
    acc_std_w = np.zeros((dims, width))
    acc_mean_b = np.zeros(dims)
    acc_std_b = np.zeros(dims)
    g_mean = np.empty(dims)
    g_raw = np.empty(dims)
    row = np.empty(width)
    weights_mean = mean_weight.astype(np.float64)
    weights_std = std_weight.astype(np.float64)
    gl = grad_log_prob
    for r in range(rows):
        for j in range(dims):
            raw = float(raw_log_std[r, j])
            log_std = min(max(raw, _LOG_STD_MIN), _LOG_STD_MAX)
            std = float(np.float32(math.exp(log_std)))
            m = float(mean[r, j])
            e = float(noise[r, j])
            x = _sample(m, e, std)
            a = float(actions[r, j])
            one_minus = 1.0 - a * a
            var = std * std
            d = x - m
            g_x = (float(grad_actions[r, j]) + gl * 2.0 * a / (one_minus + epsilon)) * one_minus - gl * d / var
            g_mean[j] = g_x + gl * d / var
            g_std = g_x * e + gl * (d * d / (var * var)) * std - gl / std
            g_raw[j] = g_std * std if _LOG_STD_MIN <= raw <= _LOG_STD_MAX else 0.0
            acc_mean_b[j] += g_mean[j]
            acc_std_b[j] += g_raw[j]
        # Loops over the latent's width innermost (contiguous, vectorised); every sum is taken in the
        # same order as one loop over the action dimensions per latent unit would take it.
        row[:] = 0.0
        for j in range(dims):
            gm = g_mean[j]
            gr = g_raw[j]
            for h in range(width):
                z = float(latent[r, h])
                acc_mean_w[j, h] += gm * z
                acc_std_w[j, h] += gr * z
                row[h] += gm * weights_mean[j, h] + gr * weights_std[j, h]
        for h in range(width):
            grad_latent[r, h] = row[h] if (latent[r, h] > 0.0 or not mask) else 0.0
    for j in range(dims):
        grad_mean_bias[j] = acc_mean_b[j]
        grad_std_bias[j] = acc_std_b[j]
        for h in range(width):
            grad_mean_weight[j, h] = acc_mean_w[j, h]
            grad_std_weight[j, h] = acc_std_w[j, h]


@numba.njit(cache=True, nogil=True)
def gsde_log_probs(mean, inverted, tanh_inverted, variance, log_probs, epsilon):  # pragma: no cover
    """gSDE's log-probability of each row: the (clamped) action inverted to ``inverted``, under
    ``N(mean, sqrt(variance + eps))``, less the squashing correction ``log(1 - tanh(inverted)^2 +
    eps)``; the element-wise inputs are SB3's float32 values (torch computes them). The logarithms
    of the scale and of the correction are taken once per row, of the products (``sum log x = log
    prod x``)."""
    rows, dims = mean.shape
    for r in range(rows):
        gaussian_part = 0.0
        variances, log_variances = 1.0, 0.0
        corrections, log_corrections = 1.0, 0.0
        for j in range(dims):
            scale2 = float(variance[r, j]) + epsilon
            d = float(inverted[r, j]) - float(mean[r, j])
            gaussian_part -= (d * d) / (2.0 * scale2)
            t = float(tanh_inverted[r, j])
            variances, log_variances = _scaled(variances * scale2, log_variances)
            corrections, log_corrections = _scaled(corrections * (1.0 - t * t + epsilon), log_corrections)
        log_scales = 0.5 * (log_variances + math.log(variances))
        log_probs[r] = gaussian_part - log_scales - dims * _LOG_SQRT_2PI - (log_corrections + math.log(corrections))


@numba.njit(cache=True, nogil=True)
def gsde_grads(
    mean_raw,
    mean,
    variance,
    actions,
    inverted,
    tanh_inverted,
    low,
    high,
    clip,
    grad_actions,
    grad_log_prob,
    g_x,
    g_mean,
    g_var,
    epsilon,
):  # pragma: no cover - compiled
    """The element-wise part of :func:`gsde_backward` for the first ``len(grad_actions)`` rows (no
    transcendental function: the forward's float32 values are given): the gradients with respect
    to the pre-squash Gaussian ``g_x``, the mean layer's output ``g_mean`` (through the
    ``Hardtanh(low, high)`` clip when ``clip``) and the variance ``g_var``; the caller takes the
    products with the latent (wide ones)."""
    rows, dims = grad_actions.shape
    gl = grad_log_prob
    for r in range(rows):
        for j in range(dims):
            m = float(mean[r, j])
            a = float(actions[r, j])
            c = min(max(a, -_BOUND), _BOUND)
            scale2 = float(variance[r, j]) + epsilon  # the scale's square: no sqrt needed
            d = float(inverted[r, j]) - m
            t = float(tanh_inverted[r, j])
            one_minus_t = 1.0 - t * t
            g_back = gl * (2.0 * t * one_minus_t / (one_minus_t + epsilon) - d / scale2)
            g_c = g_back / (1.0 - c * c) if -_BOUND <= a <= _BOUND else 0.0  # atanh' = 0.5 (1/(1+c) + 1/(1-c))
            gx = (float(grad_actions[r, j]) + g_c) * (1.0 - a * a)
            g_x[r, j] = gx
            g_m = gx + gl * d / scale2
            if clip and not (low < float(mean_raw[r, j]) < high):  # Hardtanh: strictly inside only
                g_m = 0.0
            g_mean[r, j] = g_m
            # d/d variance of -(d^2) / (2 scale2) - log(scale2) / 2
            g_var[r, j] = 0.5 * gl * (d * d / scale2 - 1.0) / scale2
