"""A user's own images: the folder layout and MVTec AD's, read from real PNG files."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxad.commands import run as run_command
from jaxad.data import channels_of, load_dataset, one_class_split
from jaxad.data.sources import gamma_of

SIDE = 16


def square(value: int, side: int = SIDE) -> np.ndarray:
    return np.full((side, side), value, np.uint8)


def with_defect(image: np.ndarray, top: int, left: int, size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The image with a white square drawn in, and its mask."""
    image, mask = image.copy(), np.zeros(image.shape[:2], np.uint8)
    image[top:top + size, left:left + size] = 255
    mask[top:top + size, left:left + size] = 255
    return image, mask


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_folder(root: Path, normals: int = 6, normal_tests: int = 2, defects=("hole", "scratch"),
                 per_defect: int = 2, training_anomalies: int = 0, masks: bool = True) -> Path:
    """A folder data set: grey squares as normals, squares with a white patch as anomalies."""
    for i in range(normals):
        save(root / "normal" / f"{i:03d}.png", square(40 + 10 * i))
    for i in range(normal_tests):
        save(root / "normal_test" / f"{i:03d}.png", square(45 + 10 * i))
    for k, defect in enumerate(defects):
        for i in range(per_defect):
            image, mask = with_defect(square(60 + 10 * i), top=2 + 4 * k, left=2 + 3 * i)
            save(root / "abnormal" / defect / f"{i:03d}.png", image)
            if masks:
                save(root / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    for i in range(training_anomalies):
        save(root / "abnormal_train" / defects[0] / f"{i:03d}.png", with_defect(square(50), 8, 8)[0])
    return root


def write_mvtec(root: Path, category: str = "bottle") -> Path:
    """MVTec AD's layout for one category, as its files are named."""
    base = root / category
    for i in range(4):
        save(base / "train" / "good" / f"{i:03d}.png", square(40 + 10 * i))
    save(base / "test" / "good" / "000.png", square(45))
    for k, defect in enumerate(("broken_large", "contamination")):
        image, mask = with_defect(square(50), 2 + 5 * k, 2)
        save(base / "test" / defect / "000.png", image)
        save(base / "ground_truth" / defect / "000_mask.png", mask)
    return root


# ---------------------------------------------------------------- the folder layout

def test_a_folder_with_defect_types_training_anomalies_and_masks(tmp_path):
    root = write_folder(tmp_path, training_anomalies=2)
    ds = load_dataset("folder", str(root), image_size=SIDE)
    assert ds.class_names == ("normal", "hole", "scratch")            # abnormal/'s subfolders, sorted
    assert ds.train_labels.tolist() == [0] * 6 + [1, 1]               # abnormal_train/hole/ is class 1
    assert ds.test_labels.tolist() == [0, 0, 1, 1, 2, 2]              # normal_test/, then abnormal/ by path
    assert ds.test_masks.shape == (6, SIDE, SIDE)
    assert not ds.test_masks[:2].any()                                # normals: no anomalous pixel
    assert ds.test_masks[2].sum() == 16 and ds.test_masks[2, 2:6, 2:6].all()
    # Every training anomaly is drawn at the data's gamma a / (n + a), which the runner reads.
    gamma = gamma_of("folder", str(root))
    assert gamma == pytest.approx(2 / 8)
    split = one_class_split(ds, normal_class=0, gamma=gamma)
    assert len(split.train_anomaly) == 2 and len(split.train_normal) == 6
    assert split.class_name(2) == "scratch" and split.test_masks is ds.test_masks


def test_a_folder_of_normals_only_loads_with_a_test_split_of_normals(tmp_path):
    for i in range(5):
        save(tmp_path / "normal" / f"{i}.png", square(40 + 10 * i))
    ds = load_dataset("folder", str(tmp_path), image_size=SIDE)
    assert ds.class_names == ("normal",) and ds.test_masks is None
    split = one_class_split(ds, normal_class=0)
    assert split.test_labels.tolist() == [0] and len(split.train_normal) == 4  # 20 % held out


def test_16_bit_pngs_are_rescaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, SIDE * SIDE).round().astype(np.uint16).reshape(SIDE, SIDE)
    for i in range(3):
        save(tmp_path / "normal" / f"{i}.png", ramp)
    assert Image.open(tmp_path / "normal" / "0.png").mode == "I;16"
    ds = load_dataset("folder", str(tmp_path), image_size=SIDE)
    expected = ramp.astype(np.float32) / 65535 * 2 - 1
    np.testing.assert_allclose(ds.train_images[0, ..., 0], expected, atol=1e-5)
    assert (ds.train_images >= 1.0).mean() < 0.01  # converted to 8 bits by clipping, most pixels were +1


def test_a_damaged_colour_file_does_not_make_a_grey_folder_colour(tmp_path):
    for i in range(4):
        save(tmp_path / "normal" / f"{i}.png", square(40 + 10 * i))
    colour = save(tmp_path / "normal" / "9.png", np.zeros((SIDE, SIDE, 3), np.uint8) + 90)
    colour.write_bytes(colour.read_bytes()[:60])  # truncated: its header reads, its pixels do not
    # The header says RGB; the loader skips the file; the channels must be what the loader gives.
    assert channels_of("folder", str(tmp_path)) == 1
    with pytest.warns(UserWarning, match="could not be decoded"):
        ds = load_dataset("folder", str(tmp_path), image_size=SIDE)
    assert ds.train_images.shape[-1] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = run_command.build_spec(run_command.parse_args(
            ["--dataset", "folder", "--data-dir", str(tmp_path), "--channels", "1"]))
    assert spec.base.model.channels == 1


@pytest.mark.parametrize("damage, message", [
    ("mask of another size", "is 8x8 but its image"),
    ("mask with no image", "has no image"),
    ("anomaly with no mask", "have no mask"),
    ("empty defect folder", "defect folder .*empty.* holds no image"),
    ("mask misnamed", "named after its image"),
])
def test_bad_folders_are_refused_with_what_to_do(tmp_path, damage, message):
    root = write_folder(tmp_path / "data")
    if damage == "mask of another size":
        save(root / "ground_truth" / "hole" / "000_mask.png", np.zeros((8, 8), np.uint8))
    elif damage == "mask with no image":
        save(root / "ground_truth" / "hole" / "007_mask.png", np.zeros((SIDE, SIDE), np.uint8))
    elif damage == "anomaly with no mask":
        (root / "ground_truth" / "scratch" / "001_mask.png").unlink()
    elif damage == "empty defect folder":
        (root / "abnormal" / "empty").mkdir()
    else:
        (root / "ground_truth" / "hole" / "000_mask.png").rename(root / "ground_truth" / "hole" / "000.png")
    with pytest.raises(ValueError, match=message):
        load_dataset("folder", str(root), image_size=SIDE)


# ---------------------------------------------------------------- MVTec AD's layout

def test_mvtec_layout_reads_a_category_where_it_lies(tmp_path):
    root = write_mvtec(tmp_path)
    ds = load_dataset("mvtec", str(root), image_size=SIDE, category="bottle")
    assert ds.class_names == ("normal", "broken_large", "contamination")
    assert ds.train_images.shape == (4, SIDE, SIDE, 1) and ds.test_labels.tolist() == [0, 1, 2]
    assert ds.test_masks[1].sum() == 16 and ds.test_masks[2, 7:11, 2:6].all()
    assert gamma_of("mvtec", str(root), "bottle") == 0.0


def test_mvtec_refuses_a_category_that_does_not_exist(tmp_path):
    root = write_mvtec(tmp_path)
    with pytest.raises(FileNotFoundError, match="category 'botle' is not in .*: it holds bottle"):
        load_dataset("mvtec", str(root), category="botle")
    with pytest.raises(ValueError, match="needs a category .*bottle"):
        load_dataset("mvtec", str(root))
    with pytest.raises(ValueError, match="mnist has no categories"):
        load_dataset("mnist", str(root), category="bottle")
