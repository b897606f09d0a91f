"""The layer table: Caffe's ``net.blobs`` and ``net.params`` listings (seed 004), for any
model, as text in a terminal and as an HTML table in a notebook."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence

from ..backends.base import LayerInfo


def _shape(shape: tuple[int, ...] | None) -> str:
    return "—" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


def _params(info: LayerInfo) -> str:
    return " ".join(f"{k}{_shape(v)}" for k, v in info.param_shapes.items())


class LayerTable(Sequence[LayerInfo]):
    """One row per layer: index, name, type, output shape, parameter shapes and counts."""

    def __init__(
        self, rows: Sequence[LayerInfo], framework: str, input_shape: tuple[int | None, ...]
    ) -> None:
        self.rows = tuple(rows)
        self.framework = framework
        self.input_shape = tuple(input_shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):  # type: ignore[override]
        return self.rows[index]

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self.rows)

    @property
    def total_params(self) -> int:
        return sum(r.num_params for r in self.rows)

    def _cells(self) -> list[tuple[str, ...]]:
        return [
            (
                str(r.index),
                r.name,
                r.type,
                _shape(r.output_shape),
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
        lines.append(
            f"{len(self.rows)} layers, {self.total_params:,} parameters "
            f"({self.framework}, input {_shape(self.input_shape)})"
        )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th>{esc(h)}</th>" for h in self._HEADER)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in self._cells()
        )
        caption = esc(
            f"{len(self.rows)} layers, {self.total_params:,} parameters "
            f"({self.framework}, input {_shape(self.input_shape)})"
        )
        return (
            f'<table class="cnnw-layer-table"><caption>{caption}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
