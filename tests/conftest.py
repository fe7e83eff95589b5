"""Shared test setup: one torch thread (2-core machines slow down badly when oversubscribed)."""

import os

os.environ.setdefault("SB3_CRYPTO_THREADS", "1")

import torch

torch.set_num_threads(1)
