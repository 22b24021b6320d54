"""The loader: sampler order -> planned decoding -> batches."""

from ._loader import Batch, LoaderStats, VideoLoader

__all__ = ["Batch", "LoaderStats", "VideoLoader"]
