"""The layer table: Caffe's ``net.blobs`` and ``net.params`` listings (seed 004), for any
model, as text in a terminal and as an HTML table in a notebook."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence

from ..backends.base import LayerInfo

NOT_RUN = "did not run"
"""What the output column says for a layer that did not run in the forward pass."""


def _shape(shape: tuple[int, ...] | None) -> str:
    return "—" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


def _output(info: LayerInfo) -> str:
    return _shape(info.output_shape) if info.ran else NOT_RUN


def _params(info: LayerInfo) -> str:
    return " ".join(f"{k}{_shape(v)}" for k, v in info.param_shapes.items())


class LayerTable(Sequence[LayerInfo]):
    """One row per layer: index, name, type, output shape, parameter shapes and counts.

    Layers that did not run in the forward pass are listed too (a user looking for one finds
    it) and marked: their output column says "did not run", their HTML row has the class
    ``cnnw-not-run``, and the footer counts them. The footer also names the output layer,
    the one index ``-1`` means.
    """

    def __init__(
        self,
        rows: Sequence[LayerInfo],
        framework: str,
        input_shape: tuple[int | None, ...],
        output: str | None = None,
    ) -> None:
        self.rows = tuple(rows)
        self.framework = framework
        self.input_shape = tuple(input_shape)
        self.output = output

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):  # type: ignore[override]
        return self.rows[index]

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self.rows)

    @property
    def total_params(self) -> int:
        return sum(r.num_params for r in self.rows)

    @property
    def not_run(self) -> tuple[LayerInfo, ...]:
        """The layers that did not run in the forward pass."""
        return tuple(r for r in self.rows if not r.ran)

    def _footer(self) -> str:
        text = (
            f"{len(self.rows)} layers, {self.total_params:,} parameters "
            f"({self.framework}, input {_shape(self.input_shape)})"
        )
        if self.output is not None:
            text += f"; output layer {self.output!r} (index -1)"
        skipped = len(self.not_run)
        if skipped:
            text += (
                f"; {skipped} layer{'s' if skipped > 1 else ''} did not run in the forward "
                "pass (no activations)"
            )
        return text

    def _cells(self) -> list[tuple[str, ...]]:
        return [
            (
                str(r.index),
                r.name,
                r.type,
                _output(r),
                _params(r),
                f"{r.num_params:,}",
                "yes" if r.has_filters else "",
            )
            for r in self.rows
        ]

    _HEADER = ("#", "name", "type", "output (C, H, W)", "parameters", "count", "filters")

    def __repr__(self) -> str:
        cells = [self._HEADER, *self._cells()]
        widths = [min(48, max(len(row[i]) for row in cells)) for i in range(len(self._HEADER))]
        lines = [
            "  ".join(cell[:48].ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in cells
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(self._footer())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th>{esc(h)}</th>" for h in self._HEADER)
        # A row that did not run is greyed inline as well as classed: a notebook shows this
        # HTML without our stylesheet.
        not_run = (
            f'<tr class="cnnw-not-run" style="opacity: 0.6" title="{esc(NOT_RUN)} in the '
            'forward pass">'
        )
        body = "".join(
            (not_run if not info.ran else "<tr>")
            + "".join(f"<td>{esc(c)}</td>" for c in row)
            + "</tr>"
            for info, row in zip(self.rows, self._cells(), strict=True)
        )
        caption = esc(self._footer())
        return (
            f'<table class="cnnw-layer-table"><caption>{caption}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
