"""The shared catalogue of small test models, one module per framework (``CASES``: name ->
a function that builds a fresh model and gives its input shape)."""

from __future__ import annotations

import importlib
from typing import Any

import cnn_widgets as cw


def case(framework: str, key: str = "sequential") -> tuple[Any, cw.Adapter]:
    """A fresh model of the catalogue and its adapter."""
    module = importlib.import_module(f"tests.cases.{framework}_cases")
    model, shape = module.CASES[key]()
    return model, cw.adapt(model, input_shape=shape)
