"""`dinov3 train` / `dinov3 eval` end to end on a synthetic set with a small random backbone, on the CPU.

Each kind of head overfits the images it trained on (and the same check fails on
an untrained head); a stopped run resumes to the weights of an uninterrupted one;
two processes under torchrun train as one does; the folder written is what
`dinov3 run` loads, with the detections `dinov3 eval` scored.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dinov3_ros.cli import build_parser, main
from dinov3_toolkit.backbone import create_backbone, save_backbone
from dinov3_toolkit.checkpoint import save_state_dict
from dinov3_toolkit.heads import load_manifest
from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.heads.loader import find_head_folders, import_head_class
from dinov3_toolkit.results import DepthMeaning
from dinov3_toolkit.training.batches import Items
from dinov3_toolkit.training.cache import FeatureCache
from dinov3_toolkit.training.data import check_samples, load_dataset
from dinov3_toolkit.training.data.synthetic import make_synthetic
from dinov3_toolkit.training.head_folder import trained_description
from dinov3_toolkit.training.train_head import TrainRequest, train_head
from dinov3_toolkit.training.trainer import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
# Input sizes: 8 x 8 features for the 96 x 128 synthetic images suit boxes and depth; the label maps'
# outlines need 12 x 12.
SIZE = {"detection": 128, "segmentation": 192, "depth": 128, "flow": 128}
BACKBONE = ["--backbone", "vits16", "--random-weights", "--device", "cpu"]


def backbone(task: str) -> list[str]:
    return [*BACKBONE, "--size", str(SIZE[task])]


RECIPE = {  # few channels and a short, fast schedule: the synthetic shapes need little, and CI has two cores
    "detection": ["--head-arg", "fpn_channels=32", "--head-arg", "num_convs=2", "--epochs", "40", "--batch", "4",
                  "--lr", "2e-3"],
    "segmentation": ["--head-arg", "proj_channels=64", "--head-arg", "branch_channels=32", "--loss-arg", "size=96",
                     "--epochs", "60", "--batch", "4", "--lr", "3e-3"],
    "depth": ["--head-arg", "common_channels=32", "--head-arg", "proj_channels=[8,8,16,16]", "--head-arg",
              "dropout=0.0", "--epochs", "60", "--batch", "2", "--lr", "1e-2"],
    "flow": ["--head-arg", "proj_channels=32", "--head-arg", "radius=2", "--head-arg", "fusion_channels=32",
             "--head-arg", "fusion_layers=1", "--head-arg", "refinement_layers=1", "--epochs", "60", "--batch", "4",
             "--lr", "3e-3"],
}
GOAL = {"detection": ("map50", 0.9, True), "segmentation": ("miou", 0.9, True), "depth": ("absrel", 0.1, False),
        "flow": ("epe", 1.0, False)}  # flow: 8 textures, each moved by its own whole-pixel shift


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth"), images=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")  # shared: later runs reuse the features, as users' runs do


def data_of(task: str, synth: Path) -> str:
    return str({"detection": synth / "instances.json", "flow": synth / "flow_pairs"}.get(task, synth))


def train(task: str, synth: Path, cache: Path, out: Path, *extra: str) -> int:
    data = data_of(task, synth)
    return main(["train", task, "--data", data, "--val-data", data, "--out", str(out), *RECIPE[task], *backbone(task),
                 "--schedule", "cosine", "--augment", "0", "--workers", "0", "--cache-dir", str(cache), "--quiet",
                 *extra])


def evaluate(folder: Path, task: str, synth: Path, out: Path) -> dict:
    assert main(["eval", str(folder), "--data", data_of(task, synth), *BACKBONE, "--out", str(out), "--quiet"]) == 0
    # (no --size: eval runs the head at the size it was trained at, from its head.yaml)
    return json.loads((out / "metrics.json").read_text())


def reached(task: str, metrics: dict) -> bool:
    key, goal, higher = GOAL[task]
    value = metrics[key]
    return value is not None and (value >= goal if higher else value <= goal)


@pytest.fixture(scope="module")
def trained(synth, cache, tmp_path_factory) -> dict[str, Path]:
    """Each built-in head trained once on the synthetic set (the module's tests share them)."""
    folders = {}
    for task in GOAL:
        out = tmp_path_factory.mktemp(task) / f"head_shapes_{task}"
        assert train(task, synth, cache, out) == 0
        folders[task] = out
    return folders


@pytest.mark.parametrize("task", list(GOAL))
def test_each_head_overfits_the_images_it_trained_on_and_an_untrained_one_does_not(task, trained, synth, tmp_path):
    folder = trained[task]
    metrics = evaluate(folder, task, synth, tmp_path / "trained")
    assert reached(task, metrics), metrics
    log = [json.loads(line) for line in (folder / "report" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["train"]["loss"] < log[0]["train"]["loss"] / 2

    # Control: the same folder with freshly initialised weights fails the same check.
    manifest = load_manifest(folder)
    cls = import_head_class(manifest)
    classes = manifest.read_class_names()
    torch.manual_seed(1)
    fresh = cls(**manifest.args, **({"class_names": classes} if classes else {}))
    save_state_dict(fresh.state_dict(), folder.parent / "fresh.pth")
    untrained = folder.parent / f"head_untrained_{task}"
    shutil.copytree(folder, untrained)
    shutil.copy(folder.parent / "fresh.pth", untrained / "weights" / "model.pth")
    assert not reached(task, evaluate(untrained, task, synth, tmp_path / "untrained"))


def test_the_folder_holds_everything_the_node_needs(trained):
    folder = trained["detection"]
    manifest = load_manifest(folder)
    assert manifest.read_class_names() == ("square", "disc", "triangle")
    assert manifest.trained_on == {"backbone": "vits16", "size": SIZE["detection"], "resize_mode": "stretch"}
    assert manifest.provenance["backbone_weights"] == "RANDOM" and len(manifest.provenance["weights_sha256"]) == 64
    assert manifest.provenance["metrics"]["map50"] >= 0.9 and manifest.loss == ("loss", "FCOSLoss")
    assert manifest.args["in_channels"] == 384  # the backbone's width, not the template's
    assert "3 classes (square, disc, triangle)" in manifest.description  # what it learned, not the template's
    assert "COCO" not in manifest.description and "trained by dinov3 train on" in manifest.description
    for name in ("model.py", "loss.py", "weights/model.pth", "report/metrics.json", "report/train_log.jsonl",
                 "report/curves.png", "report/precision_recall.png", "checkpoints/last.pt"):
        assert (folder / name).is_file(), name
    pictures = sorted((folder / "report").glob("val_*.jpg"))
    assert pictures and cv2.imread(str(pictures[0])).shape == (96, 2 * 128, 3)  # the ground truth, the prediction
    assert list((folder / "report" / "tensorboard").glob("events.out.tfevents.*"))  # tensorboard is a test extra
    # A trained depth head learned the data's metres, whatever its template claimed (the built-in: relative).
    assert load_manifest(trained["depth"]).depth == DepthMeaning("m", "metric")
    assert load_manifest(folder).depth is None  # only depth heads state a depth meaning


@pytest.mark.parametrize("template", find_head_folders(templates=True), ids=lambda folder: folder.name)
def test_a_trained_description_names_its_own_classes_and_keeps_the_template_s_architecture(template):
    manifest = load_manifest(template)
    names = [f"thing{i}" for i in range(7)]
    text = trained_description(manifest, names, "shapes/")
    assert "7 classes (thing0, thing1, thing2, thing3, thing4, ...)" in text and text.endswith(" on shapes/")
    assert not re.search(r"\b(80|133|20) (COCO|Pascal|classes)", text) and "undocumented" not in text, text
    assert text.startswith(manifest.description.split(",")[0].split(" (")[0]), text  # the architecture stays


def test_dinov3_run_loads_the_folder_and_finds_what_eval_scored(trained, synth, tmp_path, capsys):
    folder = trained["detection"]
    evaluate(folder, "detection", synth, tmp_path / "eval")
    scored = {line["image"]: line["result"] for line in map(json.loads, (tmp_path / "eval" / "predictions.jsonl")
                                                            .read_text().splitlines())}
    image = sorted(scored)[0]
    out = tmp_path / "run"
    assert main(["run", str(synth / "images" / Path(image).name), "--head-dir", str(folder), "--heads",
                 "shapes_detection", *backbone("detection"), "--out", str(out), "--no-overlay", "--quiet"]) == 0
    record = json.loads((out / "frames.jsonl").read_text().splitlines()[0])
    ran = record["heads"]["shapes_detection"]["detections"]
    assert ran and len(ran) == len(scored[image]["detections"])
    for got, want in zip(ran, scored[image]["detections"]):
        assert got["class_name"] == want["class_name"]
        np.testing.assert_allclose(got["box"], want["box"], atol=1e-3)
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(synth, cache, tmp_path, caplog):
    options = TrainOptions(epochs=3, batch=2, lr=1e-3, schedule="recipe", augment=0.5, augment_epochs=2,
                           workers=0, seed=3)

    def request(out: Path, resume: bool = False) -> TrainRequest:
        return TrainRequest(head="detection", data=synth / "instances.json", out=out, val_fraction=0.25,
                            head_args={"fpn_channels": 16, "num_convs": 1}, backbone="vits16", random_weights=True,
                            device="cpu", size=SIZE["detection"], cache_dir=cache, resume=resume, progress=False)

    with caplog.at_level(logging.WARNING, logger="dinov3_toolkit.training.train_head"):
        whole = train_head(request(tmp_path / "head_whole"), options)
    # 0.25 of 8 images: a validation set too small to judge by, said with what to do about it
    assert "only 2 validation images" in caplog.text and "only 8 images: give a separate --val-data" in caplog.text
    steps = iter(range(10**6))
    stopped = train_head(request(tmp_path / "head_parts"), options, stop=lambda: next(steps) == 4)  # mid-epoch 2
    assert stopped.outcome.stopped and len(stopped.outcome.history) == 1
    resumed = train_head(request(tmp_path / "head_parts", resume=True), options)
    assert not resumed.outcome.stopped and len(resumed.outcome.history) == 3

    def last(folder: Path) -> dict:
        return torch.load(folder / "checkpoints" / "last.pt", weights_only=False)["model"]

    a, b = last(tmp_path / "head_whole"), last(tmp_path / "head_parts")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert [e["train"]["loss"] for e in whole.outcome.history] == pytest.approx(
        [e["train"]["loss"] for e in resumed.outcome.history], rel=1e-5)


def test_two_processes_under_torchrun_train_like_one(synth, cache, tmp_path):
    def run(nproc: int, out: Path) -> dict:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                   "--module", "dinov3_ros.cli",
                   "train", "detection", "--data", str(synth / "instances.json"), "--val-data",
                   str(synth / "instances.json"), "--out", str(out), *RECIPE["detection"], *backbone("detection"),
                   "--schedule", "cosine", "--augment", "0", "--workers", "0", "--cache-dir", str(cache), "--quiet"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads((out / "report" / "metrics.json").read_text())

    one, two = run(1, tmp_path / "one" / "head_one"), run(2, tmp_path / "two" / "head_two")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["head_two"]  # one folder, written once
    assert two["map50"] == pytest.approx(one["map50"], abs=0.1) and two["map50"] >= 0.8
    assert two["images"] == one["images"] == 8  # the validation shards add up to the whole set


def test_a_head_without_a_loss_says_it_cannot_be_trained(synth, tmp_path, capsys):
    head = tmp_path / "head_frozen"
    head.mkdir()
    source = ROOT / "examples" / "head_linear_probe"
    for name in ("model.py", "class_names.txt"):
        (head / name).write_text((source / name).read_text())
    text = (source / "head.yaml").read_text()
    (head / "head.yaml").write_text("\n".join(line for line in text.splitlines() if not line.startswith("loss")))
    assert main(["train", str(head), "--data", str(synth), "--out", str(tmp_path / "head_out"),
                 *backbone("segmentation")]) == 2
    assert "cannot be trained" in capsys.readouterr().err


@pytest.mark.parametrize("out, message", [
    ("shapes", "must be head_<name>"),
    ("head_detection", "built-in head's name"),
])
def test_the_output_folder_must_be_a_loadable_head_name(out, message, synth, tmp_path, capsys):
    assert main(["train", "detection", "--data", str(synth / "instances.json"), "--out", str(tmp_path / out),
                 *backbone("detection")]) == 2
    assert message in capsys.readouterr().err


def test_bad_data_stops_before_training_naming_the_file(synth, tmp_path, capsys):
    broken = json.loads((synth / "instances.json").read_text())
    broken["annotations"][0]["category_id"] = 99
    (tmp_path / "images").symlink_to(synth / "images")
    (tmp_path / "bad.json").write_text(json.dumps(broken))
    assert main(["train", "detection", "--data", str(tmp_path / "bad.json"), "--out", str(tmp_path / "head_x"),
                 *backbone("detection")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "99" in err
    assert not (tmp_path / "head_x" / "checkpoints").exists()


def test_synth_lists_every_format_and_prints_train_and_eval_commands_that_run(tmp_path, capsys, no_weights):
    assert main(["synth", str(tmp_path / "s"), "--images", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("instances.json", "panoptic.json", "classes.txt", "voc/Annotations"):
        assert (tmp_path / "s" / name).exists(), name
    for shown, task in [("instances.json", "detection"), ("voc/", "detection"), ("panoptic.json", "segmentation"),
                        ("masks/", "segmentation"), ("depth/", "depth"), ("flow_pairs/", "flow")]:
        assert re.search(rf"^  {re.escape(shown)}\s+{task}\s+3 images", out, re.M), shown
    commands = [shlex.split(line)[1:] for line in out.splitlines() if line.startswith("  dinov3 ")]
    trains = [c for c in commands if c[0] == "train"]
    assert sorted(c[1] for c in trains) == ["depth", "detection", "detection", "flow", "segmentation",
                                            "segmentation"]
    assert len(commands) == 2 * len(trains) and all(c[-1] == "--random-weights" for c in commands)  # none found
    for command in commands:
        build_parser().parse_args(command)  # every one is a valid command line
    # The first pair, as printed, with a tiny model and one epoch appended (later options win).
    assert main([*commands[0], *BACKBONE, "--size", "64", "--epochs", "1", "--workers", "0", "--augment", "0",
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    assert commands[1][0] == "eval" and commands[1][1] == commands[0][commands[0].index("--out") + 1]
    assert main([*commands[1], "--device", "cpu", "--quiet", "--param", "synth_coco.score_threshold=0.5",
                 "--out", str(tmp_path / "scores")]) == 0
    assert json.loads((tmp_path / "scores" / "metrics.json").read_text())["images"] == 3


def test_train_and_eval_without_weights_say_how_to_run_anyway(synth, tmp_path, capsys, no_weights):
    tiny = ["--backbone", "vits16", "--device", "cpu", "--size", "64", "--quiet"]
    assert main(["train", "detection", "--data", str(synth / "instances.json"), "--out", str(tmp_path / "head_a"),
                 *tiny]) == 2
    err = capsys.readouterr().err
    assert "no weights for backbone vits16.lvd1689m" in err and "pass --random-weights" in err
    assert main(["eval", "detection", "--data", str(synth / "instances.json"), *tiny]) == 2
    err = capsys.readouterr().err
    assert "no weights for backbone vits16.lvd1689m" in err and "pass --random-weights" in err
    # The backbone's weights given, not the head's: the head's error says it too.
    weights = tmp_path / "vits16.pth"
    save_backbone(create_backbone("vits16"), weights)
    assert main(["eval", "detection", "--data", str(synth / "instances.json"), *tiny, "--weights",
                 str(weights)]) == 2
    err = capsys.readouterr().err
    assert "head 'detection'" in err and "weights file not found" in err and "pass --random-weights" in err


def test_eval_takes_head_parameters_as_run_does(synth, capsys):
    """HEAD.NAME=VALUE, HEAD the scored head; the bare form and another head are refused saying the right form."""
    with pytest.raises(SystemExit):
        main(["eval", "detection", "--data", str(synth), "--param", "score_threshold=0.3"])
    assert "--param takes HEAD.NAME=VALUE, e.g. detection.score_threshold=0.4" in capsys.readouterr().err
    assert main(["eval", "detection", "--data", str(synth), "--param", "retinanet.score_threshold=0.3"]) == 2
    assert "--param names head 'retinanet', but dinov3 eval scores head 'detection': give its parameters as " \
           "--param detection.NAME=VALUE" in capsys.readouterr().err


def test_resuming_with_other_settings_is_refused_by_name(synth, cache, tmp_path, capsys):
    out = tmp_path / "head_r"
    args = ["train", "detection", "--data", str(synth / "instances.json"), "--out", str(out), *RECIPE["detection"],
            *backbone("detection"), "--augment", "0", "--workers", "0", "--cache-dir", str(cache), "--quiet"]
    assert main([*args[:-1], "--epochs", "1", "--quiet"]) == 0
    assert main([*args, "--epochs", "1", "--resume", "--head-arg", "fpn_channels=16"]) == 2
    assert "args differ" in capsys.readouterr().err
    assert main([*args, "--epochs", "1", "--resume", "--lr", "1e-4"]) == 2
    assert "options differ" in capsys.readouterr().err


def test_the_template_folder_is_never_the_output(tmp_path, synth, capsys):
    template = tmp_path / "head_probe"
    shutil.copytree(ROOT / "examples" / "head_linear_probe", template)
    assert main(["train", str(template), "--data", str(synth), "--out", str(template), "--overwrite",
                 *backbone("segmentation")]) == 2
    assert "template head's folder" in capsys.readouterr().err
    assert (template / "model.py").is_file()  # not deleted by --overwrite


def test_a_seed_outside_numpys_range_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="seed must be an integer in"):
        TrainOptions(seed=-1)
    with pytest.raises(ConfigError, match="seed must be an integer in"):
        TrainOptions(seed=2**32)


def test_an_image_missing_from_the_cache_goes_through_the_backbone(synth, tmp_path):
    data = load_dataset("detection", synth / "instances.json")
    cache = FeatureCache(tmp_path, backbone="x", checksum="0", size=128, resize_mode="stretch", precision="fp32",
                         layers=[-1])
    item = Items(data, check_samples(data), cache, None, ((128, 128), (8, 8)), seed=0)[0]
    assert item["maps"] is None and item["image"].shape == (96, 128, 3)
    cache.store(data.samples[0].image, [torch.ones(1, 4, 8, 8)])
    item = Items(data, check_samples(data), cache, None, ((128, 128), (8, 8)), seed=0)[0]
    assert item["image"] is None and item["maps"][0].shape == (4, 8, 8) and item["maps"][0].dtype == torch.float32


def test_eval_refuses_a_folder_that_a_built_in_head_of_its_name_would_hide(tmp_path, synth, capsys):
    shutil.copytree(ROOT / "dinov3_toolkit" / "head_detection", tmp_path / "head_detection")
    assert main(["eval", str(tmp_path / "head_detection"), "--data", str(synth / "instances.json"),
                 *backbone("detection"), "--quiet"]) == 2
    assert "would be scored instead" in capsys.readouterr().err
