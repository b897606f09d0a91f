"""Analyses built on the adapter contract: the layer table, kernel x image responses, channel
statistics and health checks, image sets, receptive fields, and the dataset images that excite
a channel most."""

from .health import Finding, HealthReport, health_report
from .imagesets import ImageSet
from .receptive import ReceptiveField, receptive_field
from .responses import FilterResponses, filter_responses
from .stats import ChannelStats, channel_stats
from .table import LayerTable
from .top_images import TopImages, top_images

__all__ = [
    "ChannelStats",
    "FilterResponses",
    "Finding",
    "HealthReport",
    "ImageSet",
    "LayerTable",
    "ReceptiveField",
    "TopImages",
    "channel_stats",
    "filter_responses",
    "health_report",
    "receptive_field",
    "top_images",
]
