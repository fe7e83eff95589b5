"""Deployment: export modules, ONNX writing, the parity check, int8 quantisation, the model
description, the :class:`~sb3_crypto.deploy.predictor.Predictor` and the FastAPI app."""
