"""The ``image`` modality: spaces, representations, tasks, splits, artefacts and the kit's modality checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import polydiff
from polydiff.testing import checks as C
from polydiff.testing.budgets import TINY
from polydiff_image.degradations import TASKS
from polydiff_image.modality import DEMO, ImageModality, modality_specs


def _batch(m: ImageModality, n: int = 8, split: str = "train") -> dict[str, torch.Tensor]:
    return C.data_batch(m, n, split)


@pytest.mark.parametrize("representation", ["continuous", "bounded", "discrete"])
def test_representation_declares_its_space(representation: str) -> None:
    m = ImageModality(dataset="digits", representation=representation)
    space = m.spaces["image"]
    assert space.kind == representation and space.shape == (1, 8, 8) and m.image_shape == (1, 8, 8)
    batch = _batch(m)
    polydiff.validate_state(batch, m.spaces, where="test")
    if representation == "discrete":
        assert space.vocab_size == 17
    lo, hi = (-1.0, 1.0) if representation == "continuous" else (0.0, 1.0)
    unit = m.to_unit(batch["image"])
    assert unit.dtype == torch.float32 and float(unit.min()) >= 0.0 and float(unit.max()) <= 1.0
    if representation != "discrete":
        assert float(batch["image"].min()) >= lo and float(batch["image"].max()) <= hi


def test_discrete_digits_ids_are_the_native_values() -> None:
    from polydiff_image.data import load_digits

    m = ImageModality(dataset="digits", representation="discrete")
    native = torch.from_numpy(load_digits().pixels[..., 0].astype(np.int64))
    assert torch.equal(m.item(5)["image"][0], native[5])


@pytest.mark.parametrize("representation,levels", [("continuous", None), ("bounded", None), ("discrete", 16),
                                                   ("discrete", 2)])
def test_encode_decode_roundtrip(representation: str, levels: int | None) -> None:
    m = ImageModality(dataset="mnist", representation=representation, levels=levels, n_validation=100)
    x = _batch(m, 16)["image"]
    pixels = m.decode({"image": x})
    assert pixels.shape == (16, 28, 28, 1) and pixels.dtype == np.uint8
    back = m.encode(pixels)["image"]
    if representation == "discrete":
        assert torch.equal(back, x) and int(x.max()) < levels and int(x.min()) >= 0
    else:
        # x comes from uint8 data: decode(x) is exact, so encode(decode(x)) = x to float rounding
        assert float((back - x).abs().max()) < 1e-6
    assert np.array_equal(m.decode(m.encode(pixels)), pixels)


def test_decode_of_unquantised_values_is_within_half_a_level() -> None:
    m = ImageModality(dataset="digits")
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    back = m.encode(m.decode({"image": x}))["image"]
    assert float((back - x).abs().max()) <= 1.0 / 255 + 1e-6  # half of a 2/255 step in [-1, 1]


def test_photos_are_rgb_32_and_grey_on_request() -> None:
    m = ImageModality(dataset="photos", n_images=20, n_validation=4)
    assert m.image_shape == (3, 32, 32) and m.n_classes == 2
    grey = ImageModality(dataset="photos", n_images=20, n_validation=4, channels=1, size=16)
    assert grey.image_shape == (1, 16, 16)


def test_mnist_resized_and_rgb() -> None:
    m = ImageModality(dataset="mnist", size=14, channels=3, n_validation=500)
    x = _batch(m, 4)["image"]
    assert x.shape == (4, 3, 14, 14) and torch.equal(x[:, 0], x[:, 2])


def test_conditional_adds_label_field() -> None:
    m = ImageModality(dataset="mnist", conditional=True)
    assert m.cond_spaces == {"label": polydiff.Discrete((1,), 10)} and m.n_classes == 10
    batch = _batch(m, 8)
    assert batch["label"].shape == (8, 1) and batch["label"].dtype == torch.int64
    polydiff.validate_state(batch, {**m.spaces, **m.cond_spaces}, where="test")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("representation", ["continuous", "discrete"])
def test_task_declares_degraded_and_pairs(task: str, representation: str) -> None:
    m = ImageModality(dataset="digits", task=task, representation=representation)
    assert m.pairs == {"image": "degraded"} and m.cond_spaces["degraded"] == m.spaces["image"]
    batch = _batch(m, 16)
    polydiff.validate_state(batch, {**m.spaces, **m.cond_spaces}, where="test")
    assert not torch.equal(batch["degraded"], batch["image"])
    again = _batch(ImageModality(dataset="digits", task=task, representation=representation), 16)
    assert torch.equal(again["degraded"], batch["degraded"]), "degraded images must be fixed by the seed"


def test_degraded_depends_on_seed_and_item() -> None:
    a = ImageModality(dataset="digits", task="inpaint", seed=0)
    b = ImageModality(dataset="digits", task="inpaint", seed=1)
    mask_a = [a.degraded(j) == 0.5 for j in range(8)]
    mask_b = [b.degraded(j) == 0.5 for j in range(8)]
    assert any(not torch.equal(mask_a[0], m) for m in mask_a[1:]), "every item has the same box"
    assert any(not torch.equal(x, y) for x, y in zip(mask_a, mask_b)), "the seed does not move the boxes"


def test_no_task_means_no_pairs() -> None:
    m = ImageModality(dataset="digits")
    assert m.pairs == {} and m.cond_spaces == {} and set(m.dataset("train")[0]) == {"image"}


def test_split_is_fixed_by_seed_and_disjoint() -> None:
    a, b, c = (ImageModality(dataset="digits", n_validation=200, seed=s) for s in (0, 0, 1))
    assert len(a.dataset("validation")) == 200 and len(a.dataset("train")) == 1597
    assert torch.equal(a.dataset("validation").indices, b.dataset("validation").indices)
    assert not torch.equal(a.dataset("validation").indices, c.dataset("validation").indices)
    val, train = set(a.dataset("validation").indices.tolist()), set(a.dataset("train").indices.tolist())
    assert not val & train and len(val | train) == 1797
    with pytest.raises(ValueError, match="allowed splits"):
        a.dataset("test")


def test_labelled_split() -> None:
    m = ImageModality(dataset="mnist", representation="discrete")
    images, labels = m.labelled_split("validation")
    assert images.shape == (500, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert labels.shape == (500,) and labels.dtype == torch.int64 and int(labels.max()) == 9
    levels = torch.unique(images * 15)
    assert torch.allclose(levels, levels.round(), atol=1e-5), "discrete images are quantised to 16 levels"


def test_folder_and_npz_modalities(tmp_path) -> None:
    for k, name in enumerate(["a", "b"]):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((10, 12, 3), 40 * k + i, np.uint8)).save(tmp_path / "img" / name / f"{i}.png")
    m = ImageModality(dataset="folder", path=str(tmp_path / "img"), size=8, conditional=True, n_validation=2)
    assert m.image_shape == (3, 8, 8) and m.cond_spaces["label"] == polydiff.Discrete((1,), 2)
    np.savez(tmp_path / "x.npz", images=np.zeros((6, 1, 10, 10), np.uint8))
    n = ImageModality(dataset="npz", path=str(tmp_path / "x.npz"), n_validation=1)
    assert n.image_shape == (1, 10, 10) and n.n_classes is None
    with pytest.raises(polydiff.ConfigError, match="conditional.*no labels"):
        ImageModality(dataset="npz", path=str(tmp_path / "x.npz"), conditional=True)


@pytest.mark.parametrize("options,pattern", [
    ({"dataset": "cifar"}, r"dataset = 'cifar'.*mnist"),
    ({"representation": "binary"}, r"representation = 'binary'.*discrete"),
    ({"channels": 2}, r"channels = 2"),
    ({"levels": 1}, r"levels = 1"),
    ({"size": 0}, r"size = 0"),
    ({"task": "colourise"}, r"task 'colourise'.*inpaint"),
    ({"dataset": "folder"}, r"path = None"),
    ({"n_validation": 1797}, r"n_validation = 1797.*1\.\.1796"),
])
def test_config_errors_name_option_and_allowed_values(options: dict, pattern: str) -> None:
    with pytest.raises(polydiff.ConfigError, match=pattern):
        ImageModality(**options)


def test_missing_path_is_data_missing(tmp_path) -> None:
    with pytest.raises(polydiff.DataMissingError, match="generate"):
        ImageModality(dataset="npz", path=str(tmp_path / "none.npz"))


def test_write_artefacts_with_restoration(tmp_path) -> None:
    m = ImageModality(dataset="mnist", task="sr2", conditional=True)
    batch = _batch(m, 10)
    paths = m.write_artefacts(batch, tmp_path)
    assert [p.name for p in paths] == ["samples.png", "samples.npz", "restoration.png"]
    grid = np.asarray(Image.open(paths[0]))
    assert grid.shape[0] >= 3 * 28 * 4  # 10 samples -> 4 columns x 3 rows of 112-pixel tiles
    saved = np.load(paths[1])
    assert np.array_equal(saved["images"], m.decode(batch)) and saved["labels"].shape == (10,)
    assert saved["degraded"].shape == (10, 28, 28, 1)


class _ImageModalityOnly:
    """Registers only the modality, so the kit's modality checks run without the networks and metrics."""

    @polydiff.hookimpl
    def polydiff_modalities(self):
        yield from modality_specs()


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> tuple[C.Component, C.CheckContext]:
    manager = polydiff.make_plugin_manager(autoload=False, extra_plugins={"image-modality-test": _ImageModalityOnly()})
    spec = manager.registry.get("modality", "image")
    return C.Component("modality", "image", spec), C.CheckContext(manager, TINY, tmp_path_factory.mktemp("kit"))


@pytest.mark.parametrize("check", [C.check_spaces_declared, C.check_dataset_matches_spaces,
                                   C.check_encode_decode_roundtrip, C.check_artefact_written,
                                   C.check_missing_data_message], ids=lambda c: c.__name__)
def test_kit_modality_checks(kit, check) -> None:
    check(*kit)


def test_spec_and_demo_config() -> None:
    (spec,) = list(modality_specs())
    assert spec.name == "image" and spec.factory is ImageModality and not spec.problems()
    assert DEMO["modality"]["dataset"] == "digits" and DEMO["denoiser"]["name"] == "unet"
    assert DEMO["sampling"] == {"sampler": "heun", "steps": 18, "n": 256}
    assert DEMO["evaluation"]["metrics"] == ["fd_classifier"]


def test_restoration_png_adds_the_clean_image_only_when_the_pairing_is_verified(tmp_path):
    from PIL import Image

    from polydiff_image.modality import ImageModality

    modality = ImageModality(dataset="digits", task="inpaint")
    validation = modality.dataset("validation")
    batch = torch.utils.data.default_collate([validation[i] for i in range(6)])
    restored = torch.zeros_like(batch["image"]) - 1.0
    in_order = modality.write_artefacts({"image": restored, "degraded": batch["degraded"]}, tmp_path / "a")
    shuffled = modality.write_artefacts({"image": restored, "degraded": batch["degraded"].flip(0)}, tmp_path / "b")
    width = {name: Image.open(paths[-1]).size[0] for name, paths in (("in_order", in_order), ("shuffled", shuffled))}
    assert in_order[-1].name == "restoration.png"
    # three panels per item (degraded | restored | clean) against two when the pairing fails
    scale = modality._scale()
    assert width["in_order"] >= 3 * 8 * scale and width["in_order"] > width["shuffled"]


def test_trajectory_png_has_a_column_per_frame(tmp_path):
    from PIL import Image

    from polydiff_image.modality import ImageModality

    modality = ImageModality(dataset="digits")
    images = torch.stack([modality.dataset("validation")[i]["image"] for i in range(3)])
    frames = [{"image": images * w} for w in (0.0, 0.5, 1.0, 1.0)]
    path, = modality.write_trajectory(frames, tmp_path)
    assert path.name == "trajectory.png"
    width, height = Image.open(path).size
    assert width > height  # 4 columns of frames, 3 rows of samples
    rows = np.asarray(Image.open(path))
    assert rows.std() > 0
