"""The framework-neutral description of one feature-visualization run.

Everything random is drawn here, from numpy generators, before any framework op runs: the
starting parameters and the view of every step. A backend receives a :class:`RunSpec` and one
:class:`ChunkSpec` per batch and only turns them into tensor ops, so torch and Keras start from
the same numbers and see the same sequence of views.

Each image has its own generator, seeded with ``(seed, key)`` where ``key`` is a digest of the
image's objective. An image therefore comes out the same whether it is optimized alone, in a
page of 64, or in another chunk of that page: batching is only a speed-up.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from .objectives import Capture, ResolvedTerm
from .transforms import LUCID_ANGLES, LUCID_SCALES

__all__ = [
    "ChunkSpec",
    "ForwardError",
    "LucidParams",
    "NaiveParams",
    "RunSpec",
    "TermGroup",
    "image_key",
    "image_rng",
]


class ForwardError(Exception):
    """A backend's trial forward pass to the captured layers failed (the message says why)."""


@dataclass(frozen=True)
class LucidParams:
    """Settings of the ``lucid`` recipe (every one is a keyword of ``feature_viz``).

    Attributes
    ----------
    lr:
        Adam learning rate on the Fourier coefficients.
    decay_power:
        Exponent of the ``1 / f`` frequency scaling (0: plain Fourier basis).
    init_sd:
        Standard deviation of the starting coefficients.
    decorrelate:
        Mix colours with ImageNet's square-root colour covariance (RGB models only).
    transforms:
        Random views every step; False shows the model the image as it is.
    jitter, final_jitter:
        Pixel magnitudes of the two random shifts; ``None`` derives them from the image size
        (Lucid's 8 and 4 at 128 px and above, proportionally less below, see
        :func:`.transforms.magnitudes`). Lucid's pad of 12 px with constant 0.5 needs no
        setting here: the view samples outside the image directly and reads 0.5 there.
    scales, angles:
        Choices for the random scale and rotation (degrees).
    warmup_steps:
        For this many first steps, gradients pass through ReLU/ReLU6 units that would block
        them (Lucid's redirected ReLU), so channels that are dead on a gray image wake up.
    beta1, beta2, eps:
        Adam's constants.
    contrast:
        ``None``: no penalty. A number in (0, 0.5): each image is pulled towards gray by
        ``lam * sum((image - 0.5) ** 2)``, with ``lam`` chosen per image at the start so that
        for a linear objective the most wanted pixel settles ``contrast`` away from gray
        (``lam = max|d objective / d pixel| / (2 * contrast)``). Near a linear first layer the
        plain objective's optimum is a saturated image; with the pull it is the kernel itself.
        ``objective="auto"`` sets it there.
    """

    lr: float = 0.05
    decay_power: float = 1.0
    init_sd: float = 0.01
    decorrelate: bool = True
    transforms: bool = True
    jitter: int | None = None
    final_jitter: int | None = None
    scales: tuple[float, ...] = LUCID_SCALES
    angles: tuple[float, ...] = LUCID_ANGLES
    warmup_steps: int = 16
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    contrast: float | None = None


@dataclass(frozen=True)
class NaiveParams:
    """Settings of the ``naive`` recipe: plain gradient ascent on pixels, as in the Keras
    example ("visualizing what convnets learn"), for comparison.

    Attributes
    ----------
    step_size:
        Each step adds ``step_size * g / rms(g)`` to the pixels (``g`` the gradient); the
        example's step of 1 on a 0..255 scale is ``1 / 255`` here.
    init_noise:
        The start is ``128 / 255`` gray plus uniform noise of this amplitude (example: 20/255).
    """

    step_size: float = 1.0 / 255.0
    init_noise: float = 20.0 / 255.0


RecipeParams = LucidParams | NaiveParams


@dataclass(frozen=True)
class TermGroup:
    """All terms of one kind on one capture within a chunk, as index arrays.

    ``image[i]`` is the position of term ``i``'s image within the chunk; ``channel``, ``y``,
    ``x`` and ``weight`` are per term (-1 where unused). A chunk without such terms has empty
    arrays, so every chunk has the same groups in the same order.
    """

    kind: str
    capture: int
    image: np.ndarray
    channel: np.ndarray
    y: np.ndarray
    x: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True)
class ChunkSpec:
    """One batch: which images, their starting parameters and their views.

    Attributes
    ----------
    indices:
        Positions of the chunk's images in the whole request.
    init:
        Starting parameters, ``(k, C, h, w//2+1, 2)`` spectra (lucid) or ``(k, C, h, w)``
        pixels (naive).
    views:
        ``(k, steps, 2, 3)`` affine matrices (see :mod:`.transforms`).
    groups:
        The objective terms, in :attr:`RunSpec.group_keys` order.
    """

    indices: tuple[int, ...]
    init: np.ndarray
    views: np.ndarray
    groups: tuple[TermGroup, ...]

    @property
    def size(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class RunSpec:
    """What every chunk shares.

    Attributes
    ----------
    recipe:
        ``"lucid"`` or ``"naive"``.
    params:
        The recipe's settings.
    size:
        ``(height, width)`` of the images and the views.
    channels:
        Image channels (the model's input channels).
    steps:
        Optimization steps.
    captures:
        The tensors the truncated forward records, in forward order.
    group_keys:
        ``(kind, capture)`` of each :class:`TermGroup`, the same for every chunk.
    color:
        ``(C, C)`` channel mixing of the lucid parameterization.
    spectrum_scale:
        ``(h, w//2+1)`` frequency scaling of the lucid parameterization.
    """

    recipe: str
    params: RecipeParams
    size: tuple[int, int]
    channels: int
    steps: int
    captures: tuple[Capture, ...]
    group_keys: tuple[tuple[str, int], ...]
    color: np.ndarray = field(repr=False)
    spectrum_scale: np.ndarray = field(repr=False)


def image_key(terms: tuple[ResolvedTerm, ...], captures: tuple[Capture, ...], repeat: int) -> int:
    """A stable 32-bit digest of one image's objective (``repeat`` tells apart images that
    ask for the same objective twice in one request)."""
    text = repr(
        (
            [
                (
                    captures[t.capture].layer,
                    captures[t.capture].logits,
                    t.kind,
                    t.channel,
                    t.y,
                    t.x,
                    round(t.weight, 9),
                )
                for t in terms
            ],
            repeat,
        )
    )
    return zlib.crc32(text.encode("utf-8"))


def image_rng(seed: int, key: int) -> np.random.Generator:
    """The generator of one image: its start and every view it sees."""
    return np.random.default_rng([int(seed), int(key)])


def group_terms(
    per_image: list[tuple[ResolvedTerm, ...]], group_keys: tuple[tuple[str, int], ...]
) -> tuple[TermGroup, ...]:
    """Index arrays of a chunk's terms, one :class:`TermGroup` per key."""
    rows: dict[tuple[str, int], list[tuple[int, int, int, int, float]]] = {
        key: [] for key in group_keys
    }
    for position, terms in enumerate(per_image):
        for term in terms:
            rows[(term.kind, term.capture)].append(
                (position, term.channel, term.y, term.x, term.weight)
            )
    groups = []
    for kind, capture in group_keys:
        table = rows[(kind, capture)]
        columns = list(zip(*table, strict=True)) if table else [(), (), (), (), ()]
        groups.append(
            TermGroup(
                kind=kind,
                capture=capture,
                image=np.asarray(columns[0], np.int64),
                channel=np.asarray(columns[1], np.int64),
                y=np.asarray(columns[2], np.int64),
                x=np.asarray(columns[3], np.int64),
                weight=np.asarray(columns[4], np.float32),
            )
        )
    return tuple(groups)
