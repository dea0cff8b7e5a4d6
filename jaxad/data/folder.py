"""A user's images in folders, as a ``Dataset``: the folder layout and MVTec AD's.

The folder layout (anomalib's, grown by training anomalies and masks)::

    DIR/normal/                      training normals
    DIR/normal_test/                 test normals (optional; else 20% of normal/ is held out)
    DIR/abnormal/DEFECT/             test anomalies, one subfolder per defect type (optional)
    DIR/abnormal_train/DEFECT/       training anomalies (optional: the run's gamma > 0)
    DIR/ground_truth/DEFECT/NAME_mask.png   a mask per test anomaly (optional, MVTec AD's naming)

MVTec AD's layout, read where it lies (``--data-dir DIR --category C``)::

    DIR/C/train/good/  DIR/C/test/good/  DIR/C/test/DEFECT/  DIR/C/ground_truth/DEFECT/NAME_mask.png

Both become one ``ImageSet`` (the files, by role) and then one ``Dataset`` whose classes are
``normal`` and the defect types: images directly in ``abnormal/`` (no subfolder) are of type
``abnormal``. Any format pillow reads; 16-bit images are rescaled from their own range.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jaxad.data.arrays import Dataset, _readonly, resize_images, to_unit_range

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L")  # pillow's modes for 16-bit grey (PNG, TIFF)
FOLDER_CLASSES = ("normal", "abnormal")  # a folder's classes before its files are read
GENERIC_DEFECT = "abnormal"  # the defect type of anomalies not in a defect subfolder
MASK_SUFFIX = "_mask"
HOLDOUT = 0.2  # the fraction of normal/ held out for testing when there is no normal_test/
FOLDER_LAYOUT = ("DIR/normal/ (training normals), optionally DIR/normal_test/ (test normals), "
                 "DIR/abnormal/DEFECT/ (test anomalies by defect type), DIR/abnormal_train/DEFECT/ "
                 "(training anomalies) and DIR/ground_truth/DEFECT/NAME_mask.png (masks)")


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """The image files of a data set in folders, by role.

    ``test_normal`` None: a seeded fraction of ``train_normal`` is held out for testing.
    Anomalies are ``(path, defect type)``. ``masks`` maps a test anomaly to its mask file;
    empty when the data set has none.
    """

    name: str
    root: Path
    train_normal: tuple[Path, ...]
    test_normal: tuple[Path, ...] | None
    train_anomaly: tuple[tuple[Path, str], ...] = ()
    test_anomaly: tuple[tuple[Path, str], ...] = ()
    masks: dict[Path, Path] = dataclasses.field(default_factory=dict)

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Every defect type of the training and test anomalies, sorted."""
        return tuple(sorted({kind for _, kind in self.train_anomaly + self.test_anomaly}))

    @property
    def class_names(self) -> tuple[str, ...]:
        """``("normal", *defect_types)``: class 0 is normal, class k the k-th defect type."""
        return ("normal",) + self.defect_types

    def image_paths(self) -> list[Path]:
        """Every image of the set (no mask), training then test."""
        return [*self.train_normal, *(self.test_normal or ()), *(p for p, _ in self.train_anomaly),
                *(p for p, _ in self.test_anomaly)]


# ---------------------------------------------------------------- finding the files

def _identifiable(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):  # lazy: reads the header
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def image_files(directory: str | Path, recursive: bool = True) -> list[Path]:
    """The files under ``directory`` (sorted by path; with ``recursive``, in subfolders too)
    whose header pillow reads.

    Other files are skipped with a warning; a folder with no such file is an error.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder {directory} does not exist")
    files = sorted(p for p in (directory.rglob("*") if recursive else directory.iterdir()) if p.is_file())
    readable = {p: _identifiable(p) for p in files}
    images = [p for p in files if readable[p]]
    skipped = [p.name for p in files if not readable[p]]
    if not images:
        raise ValueError(f"image folder {directory} holds no image pillow can read ({len(skipped)} other files)")
    if skipped:
        warnings.warn(f"{directory}: skipped {len(skipped)} unreadable files, e.g. {skipped[:3]}", stacklevel=2)
    return images


def typed_images(directory: Path, exclude: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """``(path, defect type)`` of the images under ``directory``: the type is the subfolder an
    image lies in (``GENERIC_DEFECT`` directly in ``directory``). Subfolders named in
    ``exclude`` are left out; a defect subfolder without images is an error."""
    found = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and p.name not in exclude):
        try:
            found += [(path, sub.name) for path in image_files(sub)]
        except ValueError as err:
            raise ValueError(f"defect folder {sub} holds no image pillow can read: add its images or remove "
                             f"it ({err})") from None
    loose = sorted(p for p in directory.iterdir() if p.is_file())
    found += [(path, GENERIC_DEFECT) for path in loose if _identifiable(path)]
    skipped = [path.name for path in loose if (path, GENERIC_DEFECT) not in found]
    if skipped:
        warnings.warn(f"{directory}: skipped {len(skipped)} unreadable files, e.g. {skipped[:3]}", stacklevel=2)
    if not found:
        raise ValueError(f"image folder {directory} holds no image pillow can read ({len(skipped)} other files)")
    return sorted(found)


def _mask_owner(mask: Path, ground_truth: Path, anomalies: dict[tuple[Path, str], Path]) -> Path:
    """The test anomaly ``mask`` belongs to: ``ground_truth/D/NAME_mask.*`` is the mask of the
    image ``D/NAME.*`` under the anomalies' folder."""
    relative = mask.relative_to(ground_truth)
    if not mask.stem.endswith(MASK_SUFFIX):
        raise ValueError(f"{mask}: a mask is named after its image with {MASK_SUFFIX!r} (MVTec AD's naming), "
                         f"e.g. ground_truth/scratch/000{MASK_SUFFIX}.png for abnormal/scratch/000.png")
    key = (relative.parent, mask.stem[:-len(MASK_SUFFIX)])
    if key not in anomalies:
        raise ValueError(f"mask {mask} has no image: no {relative.parent / key[1]}.* among the test "
                         f"anomalies; remove the mask or add its image")
    return anomalies[key]


def match_masks(ground_truth: Path, anomaly_root: Path,
                test_anomaly: list[tuple[Path, str]]) -> dict[Path, Path]:
    """Each test anomaly's mask under ``ground_truth`` (``{}`` when it does not exist).

    Every mask must belong to a test anomaly and every test anomaly must have one: pixel
    metrics are computed over every test image, or not at all.
    """
    if not ground_truth.is_dir():
        return {}
    by_name = {(path.relative_to(anomaly_root).parent, path.stem): path for path, _ in test_anomaly}
    masks = {}
    for mask in image_files(ground_truth):
        image = _mask_owner(mask, ground_truth, by_name)
        if image in masks:
            raise ValueError(f"{image} has two masks: {masks[image]} and {mask}")
        masks[image] = mask
    missing = [path for path, _ in test_anomaly if path not in masks]
    if missing:
        example = missing[0].relative_to(anomaly_root)
        raise ValueError(f"{len(missing)} test anomalies have no mask under {ground_truth}, e.g. {missing[0]} "
                         f"(expected {ground_truth / example.parent / (example.stem + MASK_SUFFIX)}.png): "
                         f"give every test anomaly a mask, or remove {ground_truth.name}/ to run without "
                         f"pixel metrics")
    return masks


def folder_image_set(data_dir: str | Path | None) -> ImageSet:
    """The files of a folder data set (see the module docstring), or an error naming the layout."""
    if data_dir is None:
        raise ValueError(f"dataset 'folder' needs data_dir (--data-dir DIR): a folder holding {FOLDER_LAYOUT}")
    root = Path(data_dir).expanduser()
    if not (root / "normal").is_dir():
        where = f"{root} does not exist" if not root.is_dir() else f"{root} has no normal/"
        raise FileNotFoundError(f"{where}: dataset 'folder' expects {FOLDER_LAYOUT}, each holding image files")
    test_anomaly = typed_images(root / "abnormal") if (root / "abnormal").is_dir() else []
    if (root / "ground_truth").is_dir() and not test_anomaly:
        raise ValueError(f"{root} has ground_truth/ but no abnormal/: masks mark the test anomalies in abnormal/")
    return ImageSet(
        name="folder", root=root, train_normal=tuple(image_files(root / "normal")),
        test_normal=tuple(image_files(root / "normal_test")) if (root / "normal_test").is_dir() else None,
        train_anomaly=tuple(typed_images(root / "abnormal_train")) if (root / "abnormal_train").is_dir() else (),
        test_anomaly=tuple(test_anomaly),
        masks=match_masks(root / "ground_truth", root / "abnormal", test_anomaly))


def mvtec_categories(data_dir: Path) -> list[str]:
    """The categories under an MVTec AD root: the folders holding ``train/good/``."""
    return sorted(p.name for p in data_dir.iterdir() if (p / "train" / "good").is_dir())


def mvtec_image_set(data_dir: str | Path | None, category: str | None) -> ImageSet:
    """The files of one MVTec AD category where it lies (nothing is downloaded)."""
    if data_dir is None:
        raise ValueError("dataset 'mvtec' needs data_dir (--data-dir DIR): the folder holding MVTec AD's "
                         "categories (DIR/bottle/, DIR/cable/, ...)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} does not exist: give the folder holding MVTec AD's "
                                f"categories (DIR/bottle/train/good/, ...)")
    categories = mvtec_categories(root)
    if category is None:
        raise ValueError(f"dataset 'mvtec' needs a category (--category C), one of {categories or 'none found'} "
                         f"in {root}")
    if category not in categories:
        held = f"it holds {', '.join(categories)}" if categories else "it holds no category (no C/train/good/)"
        raise FileNotFoundError(f"category {category!r} is not in {root}: {held}")
    base = root / category
    if not (base / "test").is_dir():
        raise FileNotFoundError(f"{base} has no test/: MVTec AD's layout is C/train/good/, C/test/good/, "
                                f"C/test/DEFECT/ and C/ground_truth/DEFECT/NAME_mask.png")
    test_anomaly = typed_images(base / "test", exclude=("good",))
    return ImageSet(
        name="mvtec", root=base, train_normal=tuple(image_files(base / "train" / "good")),
        test_normal=tuple(image_files(base / "test" / "good")) if (base / "test" / "good").is_dir() else None,
        test_anomaly=tuple(test_anomaly),
        masks=match_masks(base / "ground_truth", base / "test", test_anomaly))


# ---------------------------------------------------------------- reading pixels

def pixels(img: Any, channels: int) -> np.ndarray:
    """A PIL image as float32 (H, W, channels) in [0, 1].

    16-bit grey (modes ``I;16*``, and ``I`` as pillow opens 16-bit PNGs) is scaled from
    [0, 65535]; converting it to 8-bit ``L`` would clip every value above 255 to white.
    Float images (``F``) must hold values in [0, 1]. Everything else goes through 8-bit
    ``L`` or ``RGB``.
    """
    if img.mode in SIXTEEN_BIT_MODES or img.mode == "F":
        values = np.asarray(img, dtype=np.float32)
        high = 1.0 if img.mode == "F" else 65535.0
        if values.size and (values.min() < 0 or values.max() > high):
            raise ValueError(f"{getattr(img, 'filename', 'an image')}: mode {img.mode} values span "
                             f"[{values.min():g}, {values.max():g}], outside [0, {high:g}]")
        grey = values / high
        return np.repeat(grey[..., None], channels, axis=-1)
    converted = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    return converted[..., None] if channels == 1 else converted


def _open_pixels(path: Path, channels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(pixels in [0, 1], (width, height)) of one image file; raises when it cannot be decoded."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return pixels(img, channels), img.size


class _Resizer:
    """Images of any sizes to (n, side, side, channels) in [-1, 1], resized in chunks of one size,
    so that a folder of large photos is never held at full size all at once."""

    def __init__(self, count: int, side: int, channels: int, chunk: int = 32) -> None:
        self.out = np.empty((count, side, side, channels), np.float32)
        self.side, self.chunk = side, chunk
        self.pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}

    def add(self, index: int, image: np.ndarray) -> None:
        group = self.pending.setdefault(image.shape, [])
        group.append((index, image))
        if len(group) == self.chunk:
            self._flush(image.shape)

    def _flush(self, shape: tuple[int, ...]) -> None:
        group = self.pending.pop(shape, [])
        if group:
            stacked = np.stack([image for _, image in group])
            self.out[[i for i, _ in group]] = resize_images(to_unit_range(stacked, 1.0), self.side)

    def result(self) -> np.ndarray:
        for shape in list(self.pending):
            self._flush(shape)
        return self.out


def read_images(paths: list[Path] | tuple[Path, ...], image_size: int, channels: int
                ) -> tuple[np.ndarray, list[int], list[tuple[int, int]]]:
    """Decode ``paths`` as float32 (n, image_size, image_size, channels) in [-1, 1].

    Files that cannot be decoded (damaged, truncated) are skipped with a warning. Returns the
    images, the indices into ``paths`` that were read, and each one's (width, height).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    resizer = _Resizer(len(paths), image_size, channels)
    kept, sizes, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            image, size = _open_pixels(path, channels)
        except (OSError, SyntaxError) as err:  # pillow's errors for damaged and truncated files
            skipped.append(f"{path.name} ({err})")
            continue
        resizer.add(len(kept), image)
        kept.append(i)
        sizes.append(size)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} files that could not be decoded, e.g. {skipped[:3]}", stacklevel=2)
    return resizer.result()[:len(kept)], kept, sizes


def read_masks(masks: list[Path], sizes: list[tuple[int, int]], images: list[Path], image_size: int) -> np.ndarray:
    """Binary masks (n, image_size, image_size), each checked to be of its image's size, resized
    as the images are (bilinear) and thresholded at one half."""
    from PIL import Image

    resizer = _Resizer(len(masks), image_size, 1)
    for i, (mask, size, image) in enumerate(zip(masks, sizes, images)):
        try:
            with Image.open(mask) as img:
                img.load()
                if img.size != size:
                    raise ValueError(f"mask {mask} is {img.size[0]}x{img.size[1]} but its image {image} is "
                                     f"{size[0]}x{size[1]}: a mask marks its image's pixels, at its size")
                resizer.add(i, (pixels(img, 1) > 0).astype(np.float32))
        except (OSError, SyntaxError) as err:
            raise ValueError(f"mask {mask} cannot be read ({err})") from err
    return resizer.result()[..., 0] > 0.0  # in [-1, 1]: above 0 is more than half marked


def image_set_channels(images: ImageSet) -> int:
    """3 if any image of the set is in colour and can be decoded, else 1.

    Headers decide, except that a colour header is trusted only once its file decodes: a
    damaged colour file, which the loader skips, must not make a grey data set colour.
    """
    from PIL import Image, UnidentifiedImageError

    for path in images.image_paths():
        try:
            with Image.open(path) as img:
                if img.mode in GRAY_MODES:
                    continue
                img.load()
                return 3
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            continue
    return 1


def holdout_count(n: int, holdout: float = HOLDOUT) -> int:
    """How many of ``n`` training normals are held out for testing when there is no normal_test/."""
    return min(n - 1, max(1, round(holdout * n)))


def training_gamma(images: ImageSet, holdout: float = HOLDOUT) -> float:
    """``a / (n + a)`` of a set's training anomalies and normals (after the holdout): the gamma
    at which a run trains on every training anomaly. 0 without training anomalies."""
    a = len(images.train_anomaly)
    n = len(images.train_normal)
    if images.test_normal is None and n >= 2:
        n -= holdout_count(n, holdout)
    return a / (n + a) if a else 0.0


# ---------------------------------------------------------------- the Dataset

def _check_decoded(kept: list[int], what: str, where: Path) -> None:
    if not kept:
        raise ValueError(f"{where}: none of the {what} could be decoded")


def load_image_set(images: ImageSet, image_size: int = 32, channels: int | None = None,
                   holdout: float = HOLDOUT, seed: int = 0) -> Dataset:
    """An ``ImageSet`` as a ``Dataset``: classes ``images.class_names`` (0 normal, k a defect type).

    Train: the normals (less a fixed seeded ``holdout`` fraction when the set has no test
    normals) and the training anomalies, labelled with their defect type. Test: the test
    normals, then the test anomalies in path order, with their masks (``Dataset.test_masks``,
    zero for normals) when the set has them. ``channels`` None: ``image_set_channels``.
    """
    channels = image_set_channels(images) if channels is None else channels
    class_of = {name: k for k, name in enumerate(images.class_names)}
    train, kept, _ = read_images(images.train_normal, image_size, channels)
    _check_decoded(kept, "training normals", images.root)
    if images.test_normal is None:
        if len(train) < 2:
            raise ValueError(f"{images.root}: need at least 2 normal images to hold some out for testing "
                             f"(or give normal_test/)")
        perm = np.random.default_rng(seed).permutation(len(train))
        n_test = holdout_count(len(train), holdout)
        test_normal, train = train[np.sort(perm[:n_test])], train[np.sort(perm[n_test:])]
    else:
        test_normal, kept, _ = read_images(images.test_normal, image_size, channels)
        _check_decoded(kept, "test normals", images.root)
    train_anomaly, kept, _ = read_images([p for p, _ in images.train_anomaly], image_size, channels)
    train_anomaly_classes = [class_of[images.train_anomaly[i][1]] for i in kept]
    test_anomaly, kept, sizes = read_images([p for p, _ in images.test_anomaly], image_size, channels)
    read = [images.test_anomaly[i] for i in kept]
    test = np.concatenate([test_normal, test_anomaly])
    test_classes = np.array([0] * len(test_normal) + [class_of[kind] for _, kind in read], np.int32)
    masks = None
    if images.masks:
        anomaly_masks = read_masks([images.masks[p] for p, _ in read], sizes, [p for p, _ in read], image_size)
        masks = np.concatenate([np.zeros((len(test_normal), image_size, image_size), bool), anomaly_masks])
    return Dataset(name=images.name, train_images=_readonly(np.concatenate([train, train_anomaly])),
                   train_labels=_readonly(np.array([0] * len(train) + train_anomaly_classes, np.int32)),
                   test_images=_readonly(test), test_labels=_readonly(test_classes),
                   num_classes=len(images.class_names), class_names=images.class_names,
                   test_masks=None if masks is None else _readonly(masks))


def load_folder(normal_dir: str | Path, abnormal_dir: str | Path | None = None,
                normal_test_dir: str | Path | None = None, image_size: int = 32,
                channels: int | None = None, holdout: float = HOLDOUT, seed: int = 0) -> Dataset:
    """Images in folders named one by one, as ``load_image_set`` reads them: training normals,
    test anomalies (subfolders are defect types; None: none) and test normals (None: a
    seeded ``holdout`` fraction of the training normals)."""
    normal_dir = Path(normal_dir)
    return load_image_set(ImageSet(
        name="folder", root=normal_dir.parent, train_normal=tuple(image_files(normal_dir)),
        test_normal=None if normal_test_dir is None else tuple(image_files(normal_test_dir)),
        test_anomaly=() if abnormal_dir is None else tuple(typed_images(Path(abnormal_dir)))),
        image_size, channels, holdout, seed)


def load_images(directory: str | Path, image_size: int, channels: int) -> tuple[list[Path], np.ndarray]:
    """The images of a folder as the models take them: paths and float32 NHWC in [-1, 1]."""
    paths = image_files(directory)
    images, kept, _ = read_images(paths, image_size, channels)
    if not kept:
        raise ValueError(f"image folder {directory}: none of its {len(paths)} images could be decoded")
    return [paths[i] for i in kept], images
