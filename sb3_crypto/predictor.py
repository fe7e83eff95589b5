"""Deprecated path: the prediction interface moved to :mod:`sb3_crypto.deploy.predictor`, model-file
helpers to :mod:`sb3_crypto.algorithms.model_io`.

Kept so that imports written for earlier versions keep working; each name is imported from its new
module on first use, with a :class:`DeprecationWarning`.
"""

from sb3_crypto._aliases import moved_names

__getattr__ = moved_names(
    __name__,
    {
        **{name: "sb3_crypto.deploy.predictor" for name in ("Prediction", "PredictionInputError", "Predictor")},
        **{name: "sb3_crypto.algorithms.model_io" for name in ("infer_algo", "infer_env_id", "refuse_vecnormalize")},
    },
)
