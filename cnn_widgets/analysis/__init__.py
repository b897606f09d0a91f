"""Analyses built on the adapter contract: the layer table, channel statistics."""

from .table import LayerTable

__all__ = ["LayerTable"]
