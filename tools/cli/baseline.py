"""Training-baseline statistics for a registered version, computed from a table (parquet or CSV).

The validator compares the golden set against these (feature consistency) and the runner's drift
metrics compare live inputs against them, so they are computed once, at registration, from the
training data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from causeway.common.v1 import digest_pb2
from causeway.registry.v1 import model_pb2 as rm

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINS = 10


def _read(path: Path):
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: baseline data must be .parquet or .csv")


def baseline_from(path: Path, exclude: Sequence[str] = ()) -> rm.BaselineStatistics:
    frame = _read(path)
    stats = rm.BaselineStatistics(
        dataset_digest=digest_pb2.Digest(
            algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hashlib.sha256(path.read_bytes()).hexdigest()
        ),
        sample_count=len(frame),
    )
    for column in frame.columns:
        if column in exclude:
            continue
        series = frame[column]
        feature = stats.features.add(name=str(column), missing_fraction=float(series.isna().mean()))
        values = series.dropna()
        if np.issubdtype(series.dtype, np.number) and len(values):
            array = values.to_numpy(dtype=np.float64)
            numeric = feature.numeric
            numeric.mean, numeric.stddev = float(array.mean()), float(array.std())
            numeric.min, numeric.max = float(array.min()), float(array.max())
            for q in QUANTILES:
                numeric.quantiles.add(quantile=q, value=float(np.quantile(array, q)))
            counts, edges = np.histogram(array, bins=BINS)
            numeric.histogram.bin_edges.extend(float(e) for e in edges)
            numeric.histogram.counts.extend(int(c) for c in counts)
        else:
            counts = values.astype(str).value_counts()
            for value, count in counts.head(20).items():
                feature.categorical.top_categories.add(value=value, count=int(count))
            feature.categorical.distinct_count = len(counts)
    return stats
