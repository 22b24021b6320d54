"""The loader: sampler order -> planned windows -> fetch -> decode -> batches -> device."""

from ._adapter import VideoIterableDataset
from ._batch import Batch
from ._epochs import RepeatedEpochWarning
from ._fetch import FetchStage, Fetched, LocalFiles, RemoteFetch
from ._arguments import WorkerKind
from ._loader import VideoLoader
from ._row_codec import RowCompression, RowProbe
from ._stats import FileErrors, LoaderStats

__all__ = [
    "Batch",
    "FetchStage",
    "Fetched",
    "FileErrors",
    "LoaderStats",
    "LocalFiles",
    "RemoteFetch",
    "RepeatedEpochWarning",
    "RowCompression",
    "RowProbe",
    "VideoIterableDataset",
    "VideoLoader",
    "WorkerKind",
]
