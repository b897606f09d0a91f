"""Every TensorFlow graph source as one frozen ``GraphDef``: a TF1 session, a SavedModel
directory, a frozen ``.pb`` file, a ``tf.function`` or a ``tf.Module``.

Freezing only *reads* the user's graph: a session's variables are read through the
``<var>/Read/ReadVariableOp`` (or ``VariableV2``) tensors its graph already has, so its
graph gains no operation and no variable changes; a function's variables are read as
values into a copy. Both freezing functions live in TensorFlow's private
``tensorflow.python.framework.convert_to_constants``; ``tests/test_tfgraph.py`` pins them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from .tfgraph_plan import GraphIndex, Plan, make_plan

_VARIABLES = frozenset({"VarHandleOp", "VariableV2", "Variable"})


def is_session(source: Any) -> bool:
    """A ``tf.compat.v1.Session`` or ``InteractiveSession`` (siblings, not subclasses)."""
    return isinstance(source, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession))


def describe(source: Any) -> str:
    return f"{type(source).__module__}.{type(source).__name__}"


def freeze(
    source: Any,
    *,
    input: str | None,
    output: str | None,
    feed: Mapping[str, Any] | None,
    signature: str,
) -> tuple[Any, Plan]:
    """``(frozen GraphDef, its Plan)`` for a session, a SavedModel directory, a ``.pb`` file,
    a ``tf.function`` (with an input signature) or a ``ConcreteFunction``, or a ``tf.Module``
    whose ``__call__`` is such a function.

    Raises
    ------
    TypeError
        ``source`` is none of these.
    ValueError
        A file that is no GraphDef, a graph that still has variables, a missing signature,
        an uninitialized session, or what :func:`.make_plan` refuses.
    """
    if is_session(source):
        return _from_session(source, input, output, feed)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir() or path.name == "saved_model.pb":
            directory = path if path.is_dir() else path.parent
            # The loaded object owns the variables the signature reads: keep it alive until
            # the signature is frozen.
            loaded, function = _signature(directory, signature)
            frozen = _from_function(function, input, output, feed)
            del loaded
            return frozen
        return _from_graph_def(_read_graph_def(path), input, output, feed)
    function = _concrete(source)
    if function is None:
        raise TypeError(
            "expected a tf.compat.v1.Session, a SavedModel directory, a frozen GraphDef .pb "
            "file, a tf.function with an input_signature or a tf.Module whose __call__ is "
            f"one; got {describe(source)}"
        )
    return _from_function(function, input, output, feed)


def _from_session(
    session: Any, input: str | None, output: str | None, feed: Mapping[str, Any] | None
) -> tuple[Any, Plan]:
    graph_def = session.graph.as_graph_def()
    plan = make_plan(GraphIndex(graph_def), input, output, feed)
    try:
        frozen = convert_to_constants.convert_variables_to_constants_from_session_graph(
            session, graph_def, [plan.output]
        )
    except tf.errors.FailedPreconditionError as err:
        raise ValueError(
            "the session's variables are not all initialized (run the initializer or "
            f"restore a checkpoint first): {err.message.splitlines()[0]}"
        ) from None
    return frozen, make_plan(GraphIndex(frozen), plan.input, plan.output, feed)


def _from_function(
    function: Any, input: str | None, output: str | None, feed: Mapping[str, Any] | None
) -> tuple[Any, Plan]:
    try:
        frozen = convert_to_constants.convert_variables_to_constants_v2(function)
    except Exception as err:  # TensorFlow's own reasons: control flow, unsupported ops
        raise ValueError(
            f"could not freeze the function into a constant graph ({type(err).__name__}: {err})"
        ) from None
    graph_def = frozen.graph.as_graph_def()
    if input is None:
        floats = [t.op.name for t in frozen.inputs if t.dtype.is_floating]
        input = floats[0] if len(floats) == 1 else None
    return graph_def, make_plan(GraphIndex(graph_def), input, output, feed)


def _from_graph_def(
    graph_def: Any, input: str | None, output: str | None, feed: Mapping[str, Any] | None
) -> tuple[Any, Plan]:
    variables = [n.name for n in graph_def.node if n.op in _VARIABLES]
    if variables:
        raise ValueError(
            f"the graph still holds variables ({', '.join(map(repr, variables[:5]))}); "
            "pass the session or a SavedModel, or freeze the graph first"
        )
    return graph_def, make_plan(GraphIndex(graph_def), input, output, feed)


def _read_graph_def(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(
            f"no file or SavedModel directory at {str(path)!r}; expected a frozen GraphDef "
            ".pb file or a SavedModel directory"
        )
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())  # protobuf: data, never code
    except Exception as err:  # google.protobuf.message.DecodeError
        raise ValueError(
            f"{str(path)!r} is not a binary GraphDef ({type(err).__name__}); expected a "
            "frozen .pb graph"
        ) from None
    if not graph_def.node:
        raise ValueError(f"{str(path)!r} holds no graph nodes; expected a frozen .pb graph")
    return graph_def


def _signature(directory: Path, name: str) -> tuple[Any, Any]:
    if not (directory / "saved_model.pb").is_file():
        raise ValueError(f"{str(directory)!r} is not a SavedModel directory (no saved_model.pb)")
    loaded = tf.saved_model.load(str(directory))
    signatures = dict(loaded.signatures)
    if name not in signatures:
        raise ValueError(
            f"the SavedModel has no signature {name!r}; signatures: "
            f"{', '.join(map(repr, signatures)) or 'none'}"
        )
    return loaded, signatures[name]


def _concrete(source: Any) -> Any:
    """A ConcreteFunction for ``source``, or None when it is no function at all."""
    if hasattr(source, "structured_outputs") and hasattr(source, "graph"):
        return source  # already a ConcreteFunction
    function = source
    if not hasattr(function, "get_concrete_function"):
        # A tf.Module's __call__ decorated with tf.function: the bound Function.
        function = source.__call__ if callable(source) else None
        if not hasattr(function, "get_concrete_function"):
            return None
    try:
        return function.get_concrete_function()
    except (TypeError, ValueError) as err:
        raise ValueError(
            "the function needs an input_signature (tf.function(input_signature=["
            f"tf.TensorSpec([None, H, W, C], tf.float32)])) to be frozen: {err}"
        ) from None
