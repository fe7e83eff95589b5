"""Market data: loading, validation, the synthetic market, features, splits and normalisation."""

from sb3_crypto.data.features import (
    CLOSE_FEATURES,
    OHLCV_FEATURES,
    FeatureNormalizer,
    chronological_split,
    compute_features,
    feature_channels,
)
from sb3_crypto.data.loaders import (
    DataError,
    GapWarning,
    RepairReport,
    RepairWarning,
    fill_gaps,
    find_gaps,
    infer_freq,
    load_ohlcv,
    validate_ohlcv,
)
from sb3_crypto.data.market import Market, build_market, resolve_frame
from sb3_crypto.data.panel import Panel, load_panel
from sb3_crypto.data.pipeline import FeatureError, FeatureSpec, LeakError, feature_spec
from sb3_crypto.data.synthetic import periods_per_year, synthetic_ohlcv, synthetic_panel

__all__ = [
    "CLOSE_FEATURES",
    "OHLCV_FEATURES",
    "DataError",
    "FeatureError",
    "FeatureNormalizer",
    "FeatureSpec",
    "GapWarning",
    "LeakError",
    "Market",
    "Panel",
    "RepairReport",
    "RepairWarning",
    "build_market",
    "chronological_split",
    "compute_features",
    "feature_channels",
    "feature_spec",
    "fill_gaps",
    "find_gaps",
    "infer_freq",
    "load_ohlcv",
    "load_panel",
    "periods_per_year",
    "resolve_frame",
    "synthetic_ohlcv",
    "synthetic_panel",
    "validate_ohlcv",
]
