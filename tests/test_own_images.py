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


# ---------------------------------------------------------------- training, scoring and deciding

def read_csv(path: Path) -> list[dict]:
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` read back from the event files under ``log_dir``."""
    import struct
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    scalars: dict[str, list] = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):  # TFRecord framing: length, its CRC, the record, its CRC
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 16 + length
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


TINY_RUN = ["--epochs", "2", "--width", "0.125", "--batch-size", "8", "--min-anomalies-per-batch", "2",
            "--seeds", "1", "--no-progress"]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A finished run on a folder with training anomalies and masks: (data, output directory)."""
    pytest.importorskip("tensorboardX")
    data = write_folder(tmp_path_factory.mktemp("data"), normals=12, normal_tests=3, per_defect=3,
                        training_anomalies=3)
    out = tmp_path_factory.mktemp("out")
    assert run_command.main(["--dataset", "folder", "--data-dir", str(data), "--out", str(out), "--tensorboard",
                             *TINY_RUN]) == 0
    return data, out


def the_run(out: Path) -> Path:
    (run_dir,) = (out / "runs").glob("gamma*/class0/seed0")
    return run_dir


def test_a_folder_run_trains_at_its_data_gamma_and_reports_every_figure(folder_run):
    data, out = folder_run
    (row,) = read_csv(out / "results.csv")
    assert float(row["gamma"]) == pytest.approx(3 / (12 + 3))  # a / (n + a): every training anomaly
    for name in ("final_auroc", "aupr", "f1_max", "pixel_auroc", "aupro", "threshold"):
        assert 0 <= float(row[name]) and (name == "threshold" or float(row[name]) <= 100)
    (run,) = json_of(out / "results.json")["runs"]
    assert set(run["auroc_by_anomaly_class"]) == {"hole", "scratch"}
    assert run["train_anomalies"] == 3 and run["threshold_quantile"] == 0.99
    assert run["threshold_f1_optimal_on_test"] is not None
    assert "| AUPRO |" in (out / "results.md").read_text()
    scalars = tensorboard_scalars(out / "tensorboard")
    assert [step for step, _ in scalars["auroc"]] == [1, 2] and "g_loss" in scalars


def json_of(path: Path):
    import json
    return json.loads(path.read_text())


def test_score_decides_every_image_at_the_runs_threshold_or_one_given(folder_run, tmp_path, capsys):
    from jaxad.commands import score as score_command
    from jaxad.data import load_images
    from jaxad.detection import detect

    data, out = folder_run
    run_dir = the_run(out)
    threshold = json_of(run_dir / "result.json")["threshold"]
    assert score_command.main(["--run", str(run_dir), "--images", str(data / "abnormal"),
                               "--out", str(tmp_path / "a"), "--maps"]) == 0
    assert "the run's label-free threshold" in capsys.readouterr().out
    rows = read_csv(tmp_path / "a" / "scores.csv")
    assert [r["file"] for r in rows] == [f"{d}/{i:03d}.png" for d in ("hole", "scratch") for i in range(3)]
    for r in rows:
        assert float(r["normalized_score"]) == pytest.approx(float(r["score"]) / threshold, rel=1e-5)
        assert r["is_anomalous"] == str(int(float(r["score"]) >= threshold))
    assert len(list((tmp_path / "a" / "error_maps").glob("*.png"))) == 6
    # The research API, in one call, decides as the command does.
    _, images = load_images(data / "abnormal", 32, 1)
    found = detect(run_dir, images)
    np.testing.assert_allclose(found.scores, [float(r["score"]) for r in rows], rtol=1e-5)
    assert found.threshold == threshold and found.is_anomalous.tolist() == [r["is_anomalous"] == "1" for r in rows]
    # --threshold overrides: below every score, every image is anomalous.
    assert score_command.main(["--run", str(run_dir), "--images", str(data / "abnormal"),
                               "--out", str(tmp_path / "b"), "--threshold", "1e-6"]) == 0
    assert all(r["is_anomalous"] == "1" for r in read_csv(tmp_path / "b" / "scores.csv"))


def test_score_says_when_a_run_has_not_finished(folder_run, tmp_path, capsys):
    import shutil
    from jaxad.commands import score as score_command

    data, out = folder_run
    unfinished = tmp_path / "run"
    shutil.copytree(the_run(out), unfinished)
    (unfinished / "result.json").unlink()  # as if stopped after its last epoch's checkpoint
    assert score_command.main(["--run", str(unfinished), "--images", str(data / "normal_test"),
                               "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert "has not finished (2 of 2 epochs, no result.json)" in captured.err
    assert "computed now" in captured.out  # no stored threshold: from the training normals
    assert len(read_csv(tmp_path / "o" / "scores.csv")) == 3


@pytest.mark.parametrize("case, message", [
    ("--out is a file", "is a file: give a folder"),
    ("--images an empty .npy file", "is not a readable .npy array"),
    ("--images a .npy of no images", "holds no images"),
])
def test_score_refuses_bad_paths_with_a_message(folder_run, tmp_path, capsys, case, message):
    from jaxad.commands import score as score_command

    data, out = folder_run
    images, target = str(data / "abnormal"), tmp_path / "scored"
    if case == "--out is a file":
        target.write_text("results of something else")
    elif case == "--images an empty .npy file":
        images = tmp_path / "x.npy"
        images.write_bytes(b"")
    else:
        images = tmp_path / "x.npy"
        np.save(images, np.zeros((0, 32, 32, 1), np.float32))
    assert score_command.main(["--run", str(the_run(out)), "--images", str(images), "--out", str(target)]) == 2
    assert message in capsys.readouterr().err


def test_config_repeats_a_run_from_its_file(folder_run, tmp_path):
    from jaxad.config import ExperimentConfig

    _, out = folder_run
    config_file = the_run(out) / "config.json"
    saved = ExperimentConfig.from_dict(json_of(config_file))
    spec = run_command.build_spec(run_command.parse_args(["--config", str(config_file)]))
    assert spec.runs() == [saved]
    changed = run_command.build_spec(run_command.parse_args(["--config", str(config_file), "--epochs", "5"]))
    assert changed.runs() == [saved.replace(**{"train.epochs": 5})]
    (tmp_path / "bad.json").write_text('{"model": {}}')
    with pytest.raises(ValueError, match="bad.json is not a jaxad config.json"):
        run_command.build_spec(run_command.parse_args(["--config", str(tmp_path / "bad.json")]))


def test_a_folder_of_normals_only_trains_scores_and_says_no_auroc(tmp_path, capsys):
    for i in range(10):
        save(tmp_path / "data" / "normal" / f"{i}.png", square(40 + 10 * i))
    assert run_command.main(["--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                             "--out", str(tmp_path / "out"), *TINY_RUN, "--epochs", "1"]) == 0
    assert "no AUROC can be computed" in capsys.readouterr().out
    (row,) = read_csv(tmp_path / "out" / "results.csv")
    assert row["status"] == "complete" and row["final_auroc"] == row["aupr"] == row["pixel_auroc"] == ""
    assert float(row["threshold"]) > 0
    assert "No AUROC can be computed" in (tmp_path / "out" / "results.md").read_text()


def test_the_runner_refuses_what_a_folder_cannot_give(tmp_path):
    root = write_folder(tmp_path)
    with pytest.raises(ValueError, match="gamma > 0 trains on labelled anomalies.*abnormal_train"):
        run_command.build_spec(run_command.parse_args(["--dataset", "folder", "--data-dir", str(root),
                                                       "--gammas", "0.1"]))
    with pytest.raises(ValueError, match="one normal class, 0"):
        run_command.build_spec(run_command.parse_args(["--dataset", "folder", "--data-dir", str(root),
                                                       "--classes", "1"]))


# ---------------------------------------------------------------- the offline demo

def test_the_demo_data_set_is_the_folder_layout_with_masks_on_its_defects(tmp_path):
    from jaxad.data.demo_images import write_demo_folder

    root = write_demo_folder(tmp_path, normals=20, normal_tests=5, per_defect=4, training_anomalies=3)
    ds = load_dataset("folder", str(root), image_size=32)
    assert ds.class_names == ("normal", "scratch", "spot") and ds.train_labels.tolist() == [0] * 20 + [1] * 3
    assert ds.test_labels.tolist() == [0] * 5 + [1] * 4 + [2] * 4
    for i in range(5, 13):  # each anomaly's mask marks pixels, and only its own
        assert 0 < ds.test_masks[i].sum() < 0.2 * 32 * 32
    assert not ds.test_masks[:5].any()


@pytest.mark.long  # the whole demo end to end; its data set and the folder run are tested above
def test_the_demo_command_writes_trains_and_scores(tmp_path, monkeypatch, capsys):
    import functools
    from jaxad.commands import images_demo
    from jaxad.data.demo_images import write_demo_folder

    monkeypatch.setattr(images_demo, "write_demo_folder", functools.partial(
        write_demo_folder, normals=16, normal_tests=4, per_defect=3, training_anomalies=4))
    monkeypatch.setattr(images_demo, "DEMO_FLAGS", ("--image-size", "32", "--width", "0.125", "--batch-size", "8",
                                                    "--epochs", "1", "--min-anomalies-per-batch", "2", "--seeds", "1"))
    assert images_demo.main(["--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "$ jaxad-run --dataset folder" in out and "$ jaxad-score" in out and "| pixel AUROC |" in out
    assert len(read_csv(tmp_path / "scored" / "scores.csv")) == 6
    assert len(list((tmp_path / "scored" / "error_maps").glob("*.png"))) == 6


def test_the_demo_is_an_installed_command(capsys):
    import importlib
    import tomllib

    target = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    module, function = target["project"]["scripts"]["jaxad-images-demo"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0 and "sklearn's digits" in capsys.readouterr().out
