"""The atlas store: a plain directory anyone can read without the model or this package.

Layout (documented for readers in ``docs/atlas.md``)::

    out/
      <fingerprint>/                 one model (sha256 of its framework, layers and weights)
        atlas.json                   the model: framework, fingerprint, every layer in order
        <layer dir>/                 the layer name, percent-encoded (see layer_dir)
          <channel>.png              the feature visualization of that channel
          <channel>.json             its record: settings, settings key, seed, activation
                                     reached, the loss curve (no timestamps)
          manifest.json              written once every channel of the layer is there: each
                                     channel's activation and rank within the layer
          unit-<first>-<last>.error.json   a unit that failed (its error); not a result

Every file is written to a hidden temporary name in its own directory and then renamed
(``os.replace``, atomic on one file system), so a reader or a run killed at any moment sees a
file whole or not at all. Temporary names start with ``.`` and end with ``.tmp``; readers skip
them; a run removes those older than a minute (a writer killed mid-write left them). A
channel's ``.json`` is written after its ``.png``: the record is the "done" marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "ATLAS_FILE",
    "FORMAT",
    "MANIFEST",
    "Store",
    "layer_dir",
    "layer_name",
    "write_atomic",
]

FORMAT = 1
"""Version of the layout, in every ``atlas.json``."""
ATLAS_FILE = "atlas.json"
MANIFEST = "manifest.json"
STALE_TMP_SECONDS = 60.0
"""A temporary file older than this is a killed writer's leftover (see Store.sweep_stale)."""
_FINGERPRINT = re.compile(r"^[0-9a-f]{16,64}$")
_CHANNEL_RECORD = re.compile(r"^(\d+)\.json$")


def layer_dir(layer: str) -> str:
    """The directory name of a layer: the name percent-encoded (only letters, digits and
    ``-_.~`` stay), and a leading ``.`` encoded as ``%2E``. So ``/``, ``\\``, ``..`` and any
    other name stay one directory inside the store, never a hidden one, and
    :func:`layer_name` gives the name back exactly."""
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"a layer name must be a non-empty string, got {layer!r}")
    encoded = quote(layer, safe="-_.")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def layer_name(directory: str) -> str:
    """The layer name a :func:`layer_dir` directory stands for."""
    return unquote(directory)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename:
    readers and later runs never see a partial file, whenever the writer dies."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():  # the write or the rename failed: leave nothing half-written
            tmp.unlink()


def _json_bytes(value: Any) -> bytes:
    """Deterministic JSON: the same value gives the same bytes from any process or shard."""
    return (json.dumps(value, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (a reader of a store
    that is still being written, or a file from elsewhere)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class Store:
    """One model's part of an atlas directory: ``out/<fingerprint>/``."""

    def __init__(self, out: str | os.PathLike[str], fingerprint: str) -> None:
        if not _FINGERPRINT.match(fingerprint):
            raise ValueError(f"a fingerprint is 16 to 64 lowercase hex digits, got {fingerprint!r}")
        self.out = Path(out)
        self.fingerprint = fingerprint
        self.root = self.out / fingerprint

    # -- opening ----------------------------------------------------------------------------
    def check_out(self, add: bool = False) -> None:
        """Refuse an ``out`` that holds another model's atlas (unless ``add``), before anything
        is written. ``out`` may be missing, empty, or hold this model's atlas already."""
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out must be a directory, but {str(self.out)!r} is a file")
        others = sorted(set(atlas_fingerprints(self.out)) - {self.fingerprint})
        if others and not add:
            raise ValueError(
                f"{str(self.out)!r} already holds the atlas of another model (fingerprint "
                f"{', '.join(others)}); this model's fingerprint is {self.fingerprint}. Use "
                "another out directory, or add=True (--add) to keep both atlases in it."
            )

    def write_model(self, info: Mapping[str, Any]) -> None:
        """Write ``atlas.json`` (idempotent: the same model gives the same bytes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_if_changed(self.root / ATLAS_FILE, _json_bytes({"format": FORMAT, **info}))

    def sweep_stale(self, older_than: float = STALE_TMP_SECONDS) -> int:
        """Remove temporary files a killed writer left (older than ``older_than`` seconds: a
        live writer renames its file within milliseconds, so a shard writing right now
        keeps its own). Returns how many were removed."""
        if not self.root.is_dir():
            return 0
        limit, removed = time.time() - older_than, 0
        for path in (*self.root.glob(".*.tmp"), *self.root.glob("*/.*.tmp")):
            with contextlib.suppress(OSError):  # another run removed or renamed it first
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
        return removed

    # -- channels ---------------------------------------------------------------------------
    def layer_path(self, layer: str) -> Path:
        return self.root / layer_dir(layer)

    def write_channel(
        self, layer: str, channel: int, png: bytes, record: Mapping[str, Any]
    ) -> None:
        """The picture, then its record (the record marks the channel done)."""
        directory = self.layer_path(layer)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / f"{channel}.png", png)
        write_atomic(directory / f"{channel}.json", _json_bytes(dict(record)))

    def record(self, layer: str, channel: int) -> dict[str, Any] | None:
        return read_json(self.layer_path(layer) / f"{channel}.json")

    def records(self, layer: str) -> dict[int, dict[str, Any]]:
        """Every channel record of a layer that is there and readable, by channel."""
        directory = self.layer_path(layer)
        found: dict[int, dict[str, Any]] = {}
        if not directory.is_dir():
            return found
        for entry in directory.iterdir():
            match = _CHANNEL_RECORD.match(entry.name)
            if match:
                value = read_json(entry)
                if isinstance(value, dict):
                    found[int(match.group(1))] = value
        return found

    def has_channels(self, layer: str, channels: Iterable[int], settings_key: str) -> bool:
        """True when every channel has a record made with these settings."""
        for channel in channels:
            record = self.record(layer, channel)
            if record is None or record.get("settings_key") != settings_key:
                return False
        return True

    # -- unit errors ------------------------------------------------------------------------
    def error_path(self, layer: str, channels: tuple[int, ...]) -> Path:
        return self.layer_path(layer) / f"unit-{channels[0]}-{channels[-1]}.error.json"

    def write_error(self, layer: str, channels: tuple[int, ...], record: Mapping[str, Any]) -> None:
        directory = self.layer_path(layer)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.error_path(layer, channels), _json_bytes(dict(record)))

    def clear_error(self, layer: str, channels: tuple[int, ...]) -> None:
        self.error_path(layer, channels).unlink(missing_ok=True)

    # -- layers -----------------------------------------------------------------------------
    def write_manifest(self, layer: str, channels: Iterable[int], settings_key: str) -> bool:
        """Write the layer's ``manifest.json`` when all ``channels`` are done with these
        settings; return whether the layer is complete. Deterministic (channels sorted, ties
        in activation ranked by channel), so two shards writing it write the same bytes."""
        channels = sorted(channels)
        records = self.records(layer)
        if any(
            c not in records or records[c].get("settings_key") != settings_key for c in channels
        ):
            return False
        order = sorted(channels, key=lambda c: (-records[c]["activation"], c))
        rank = {c: i + 1 for i, c in enumerate(order)}
        manifest = {
            "format": FORMAT,
            "layer": layer,
            "settings_key": settings_key,
            "channels": [
                {"channel": c, "activation": records[c]["activation"], "rank": rank[c]}
                for c in channels
            ],
        }
        self._write_if_changed(self.layer_path(layer) / MANIFEST, _json_bytes(manifest))
        return True

    @staticmethod
    def _write_if_changed(path: Path, data: bytes) -> None:
        try:
            if path.read_bytes() == data:
                return
        except OSError:
            pass
        write_atomic(path, data)


def atlas_fingerprints(out: str | os.PathLike[str]) -> list[str]:
    """The fingerprints of the atlases in ``out`` (directories holding an ``atlas.json``)."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(
        entry.name
        for entry in out.iterdir()
        if entry.is_dir() and _FINGERPRINT.match(entry.name) and (entry / ATLAS_FILE).is_file()
    )
