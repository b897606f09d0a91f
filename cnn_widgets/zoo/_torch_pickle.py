"""Read the tensors of a PyTorch checkpoint as numpy arrays, without importing torch.

The Keras version of a bundled model must load its weights with only TensorFlow installed,
and unpickling a checkpoint with a plain ``pickle.load`` would run whatever code the file
names. This reader understands exactly what a state dict needs and refuses everything else.

Two on-disk formats exist:

* **legacy** (``torch.save(..., _use_new_zipfile_serialization=False)``, torch < 1.6): one
  stream of pickles — a magic number, the protocol version, a dict of system info, the saved
  object, and the list of storage keys in the order their bytes follow. Each storage is then
  written as an 8-byte little-endian element count followed by its raw bytes.
* **zip** (the default since torch 1.6): ``<archive>/data.pkl`` holds the saved object and
  ``<archive>/data/<key>`` the raw bytes of each storage; ``<archive>/byteorder`` says the
  byte order (little endian when missing).

In both, the saved object refers to a tensor as ``torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, requires_grad, hooks)``, and to a storage through a persistent id
``("storage", <torch.XStorage type>, key, location, numel[, view])``.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

__all__ = ["UnsafeCheckpointError", "read_state_dict"]

# The two constants torch writes at the head of a legacy file.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Storage class name -> numpy dtype. bfloat16 has no numpy dtype: it is widened to float32
# (exactly: a bfloat16 is the top half of a float32).
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint names something a plain tensor dictionary never needs."""


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co.: only the element type matters."""

    name: str

    @property
    def itemsize(self) -> int:
        code = _STORAGE_DTYPES[self.name]
        return 2 if code == "bf16" else np.dtype(code).itemsize


class _Storage:
    """A flat buffer whose bytes arrive after the object that refers to it has been read."""

    def __init__(self, storage_type: _StorageType, numel: int) -> None:
        self.type = storage_type
        self.numel = int(numel)
        self.data: np.ndarray | None = None  # 1-D, native byte order, filled in later

    def fill(self, raw: bytes, little_endian: bool) -> None:
        if len(raw) != self.numel * self.type.itemsize:
            raise ValueError(
                f"truncated checkpoint: a {self.type.name} of {self.numel} elements has "
                f"{len(raw)} bytes"
            )
        order = "<" if little_endian else ">"
        code = _STORAGE_DTYPES[self.type.name]
        if code == "bf16":
            halves = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32)
            self.data = (halves << 16).view(np.float32)
        else:
            self.data = np.frombuffer(raw, dtype=np.dtype(code).newbyteorder(order)).astype(
                np.dtype(code).newbyteorder("=")
            )


class _StorageView:
    """A window into a root storage (legacy files written by very old torch versions)."""

    def __init__(self, root: _Storage, offset: int, numel: int) -> None:
        self.root, self.offset, self.numel = root, int(offset), int(numel)

    @property
    def data(self) -> np.ndarray | None:
        if self.root.data is None:
            return None
        return self.root.data[self.offset : self.offset + self.numel]


@dataclass(frozen=True)
class _TensorRef:
    """What ``_rebuild_tensor_v2`` describes; materialized once all bytes are read."""

    storage: _Storage | _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise ValueError("checkpoint refers to a storage whose bytes are missing")
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise ValueError(f"invalid tensor geometry size={self.size} stride={self.stride}")
        if 0 in self.size:
            return np.zeros(self.size, dtype=flat.dtype)
        # as_strided trusts its arguments; check that every element lies inside the storage
        # so a crafted file cannot make us read past the buffer.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= flat.size:
            raise ValueError(
                f"tensor of size {self.size} (stride {self.stride}, offset {self.offset}) "
                f"reaches past its storage of {flat.size} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * flat.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)


def _rebuild_tensor(
    storage: _Storage | _StorageView,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Our stand-in for ``torch._utils._rebuild_tensor_v2`` (same positional arguments)."""
    if not isinstance(storage, (_Storage, _StorageView)):
        raise UnsafeCheckpointError("a tensor must be built on a storage")
    try:
        return _TensorRef(
            storage, int(storage_offset), tuple(int(n) for n in size), tuple(int(s) for s in stride)
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"malformed tensor: size={size!r} stride={stride!r}") from err


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and tensors; any other global is an error.

    ``find_class`` is pickle's single entry point for "import this name", so refusing there
    stops ``os.system``, ``builtins.eval``, ``subprocess.*`` and friends before they exist.
    """

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage | _StorageView] | None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        # torch.cuda.*Storage: tensors saved from a GPU; the bytes are the same.
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"refusing to load {module}.{name}: this reader accepts only dictionaries of "
            "tensors (a state_dict)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise UnsafeCheckpointError("unexpected persistent id outside the saved object")
        if not (isinstance(pid, tuple) and len(pid) >= 5):
            raise UnsafeCheckpointError(f"unknown persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise UnsafeCheckpointError(f"unsupported persistent id of kind {kind!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"storage of unknown type {storage_type!r}")
        key = str(key)
        root = self._storages.get(key)
        if root is None:
            root = _Storage(storage_type, numel)
            self._storages[key] = root
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return root
        view_key, offset, view_numel = view
        view_key = str(view_key)
        if view_key not in self._storages:
            if not isinstance(root, _Storage):
                raise UnsafeCheckpointError("a storage view must sit on a root storage")
            self._storages[view_key] = _StorageView(root, offset, view_numel)
        return self._storages[view_key]


def _load_pickle(file: IO[bytes], storages: dict[str, _Storage | _StorageView] | None) -> Any:
    return _RestrictedUnpickler(file, storages).load()


def _read_legacy(file: IO[bytes]) -> Any:
    magic = _load_pickle(file, None)
    if magic != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint (bad magic number)")
    protocol = _load_pickle(file, None)
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"unsupported legacy checkpoint protocol {protocol!r}")
    sys_info = _load_pickle(file, None)
    little_endian = (
        bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    )
    storages: dict[str, _Storage | _StorageView] = {}
    obj = _load_pickle(file, storages)
    keys = _load_pickle(file, None)
    if not isinstance(keys, list):
        raise ValueError("corrupt checkpoint: the storage key list is missing")
    for key in keys:
        storage = storages.get(str(key))
        if not isinstance(storage, _Storage):
            raise ValueError(f"corrupt checkpoint: storage {key!r} is never referenced")
        (numel,) = struct.unpack("<q", file.read(8))
        if numel != storage.numel:
            raise ValueError(
                f"corrupt checkpoint: storage {key!r} has {numel} elements, "
                f"expected {storage.numel}"
            )
        storage.fill(file.read(numel * storage.type.itemsize), little_endian)
    return obj


def _read_zip(archive: zipfile.ZipFile) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise ValueError("zip checkpoint without exactly one data.pkl")
    prefix = pickles[0][: -len("data.pkl")]
    names = set(archive.namelist())
    little_endian = True
    if prefix + "byteorder" in names:
        little_endian = archive.read(prefix + "byteorder").strip() != b"big"
    storages: dict[str, _Storage | _StorageView] = {}
    obj = _load_pickle(io.BytesIO(archive.read(pickles[0])), storages)
    for key, storage in storages.items():
        if isinstance(storage, _Storage):
            storage.fill(archive.read(f"{prefix}data/{key}"), little_endian)
    return obj


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a PyTorch ``state_dict`` checkpoint into numpy arrays, safely and without torch.

    Parameters
    ----------
    path:
        A file written by ``torch.save(model.state_dict(), path)``, in the legacy format or
        the zip format.

    Returns
    -------
    dict[str, numpy.ndarray]
        Parameter and buffer names to arrays, in the file's order, with the dtypes torch
        stores (bfloat16 widened to float32).

    Raises
    ------
    UnsafeCheckpointError
        When the file names any Python object other than a dict, an ``OrderedDict``, a
        tensor or a storage type — the way malicious pickles run code.
    ValueError
        When the file is not a checkpoint, is truncated, or holds something other than a
        flat mapping of names to tensors.
    """
    with open(path, "rb") as file:
        if zipfile.is_zipfile(file):
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                obj = _read_zip(archive)
        else:
            file.seek(0)
            obj = _read_legacy(file)
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, _TensorRef) for k, v in obj.items()
    ):
        raise ValueError(f"{os.fspath(path)!r} does not hold a flat dict of name -> tensor")
    return {name: ref.to_numpy() for name, ref in obj.items()}
