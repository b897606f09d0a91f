"""Analyses built on the adapter contract: the layer table, kernel x image responses, channel
statistics and health checks, and the dataset images that excite a channel most."""

from .health import ChannelStats, Finding, HealthReport, channel_stats, health_report
from .responses import FilterResponses, filter_responses
from .table import LayerTable
from .top_images import ImageSet, ReceptiveField, TopImages, receptive_field, top_images

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
