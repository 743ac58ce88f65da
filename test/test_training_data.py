"""Training data readers: every format of one synthetic data set reads the same, and bad data is named."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from dinov3_toolkit.heads.training import BoxTargets, DepthTargets, LabelTargets
from dinov3_toolkit.training.data import DataError, Dataset, check_samples, load_dataset, read_image
from dinov3_toolkit.training.data.synthetic import CLASSES, make_synthetic

SHAPES = ("square", "disc", "triangle")
SEGMENTATION = ("background", *SHAPES)
FORMATS = [  # (task, data relative to the synthetic folder)
    ("detection", "instances.json"),
    ("detection", "voc"),
    ("segmentation", "panoptic.json"),
    ("segmentation", "."),
    ("depth", "."),
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """One read-only synthetic set for the tests that only read."""
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A small synthetic set of the test's own, to damage."""
    return make_synthetic(tmp_path / "data", images=3)


def names(dataset: Dataset) -> list[str]:
    return [sample.name for sample in dataset.samples]


def targets(dataset: Dataset) -> list:
    return [sample.load_target() for sample in dataset.samples]


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def edit_json(path: Path, change) -> None:
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_synthetic_is_deterministic_and_textured(tmp_path):
    a = make_synthetic(tmp_path / "a")
    b = make_synthetic(tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 8 * 9 + 3  # per image: image, VOC copy and XML, panoptic, mask, depth, a flow pair (3)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (make_synthetic(tmp_path / "c", seed=1) / "images" / "img_000.png").read_bytes() != \
        (a / "images" / "img_000.png").read_bytes()
    mask = cv2.imread(str(a / "masks" / "img_000.png"), cv2.IMREAD_UNCHANGED)
    background = read_image(a / "images" / "img_000.png")[mask == 0]
    assert background.std(axis=0).min() > 10  # textured, not flat


@pytest.mark.parametrize(("task", "data"), FORMATS)
def test_every_format_reads_the_same_images(synthetic, task, data):
    dataset = load_dataset(task, synthetic / data)
    assert dataset.task == task
    assert names(dataset) == [f"img_{i:03d}.png" for i in range(8)]
    assert all(s.image.read_bytes() == (synthetic / "images" / s.name).read_bytes() for s in dataset.samples)
    assert check_samples(dataset) == [(96, 128)] * 8
    sample = pickle.loads(pickle.dumps(dataset.samples[1]))  # data-loader workers get samples pickled
    assert type(sample.load_target()) is type(dataset.samples[1].load_target())


def test_class_names_of_each_format(synthetic, tmp_path):
    assert CLASSES == SHAPES
    assert load_dataset("detection", synthetic / "instances.json").class_names == SHAPES
    assert load_dataset("detection", synthetic / "voc").class_names == tuple(sorted(SHAPES))  # names found
    assert load_dataset("detection", synthetic / "voc", classes=write_lines(tmp_path / "c.txt", *SHAPES)
                        ).class_names == SHAPES
    assert load_dataset("segmentation", synthetic / "panoptic.json").class_names == SEGMENTATION
    assert load_dataset("segmentation", synthetic).class_names == SEGMENTATION
    assert load_dataset("depth", synthetic).class_names == ()


def test_coco_and_voc_boxes_agree(synthetic, tmp_path):
    coco = targets(load_dataset("detection", synthetic / "instances.json"))
    voc = targets(load_dataset("detection", synthetic / "voc", classes=write_lines(tmp_path / "c.txt", *SHAPES)))
    assert sum(len(t.labels) for t in coco) >= 8
    for a, b in zip(coco, voc):
        assert isinstance(a, BoxTargets) and a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_array_equal(a.labels, b.labels)
    sorted_voc = load_dataset("detection", synthetic / "voc")  # classes in another order: the same names
    for a, b in zip(coco, targets(sorted_voc)):
        assert [SHAPES[i] for i in a.labels] == [sorted_voc.class_names[i] for i in b.labels]


def test_masks_panoptic_and_boxes_agree(synthetic):
    masks = targets(load_dataset("segmentation", synthetic))
    panoptic = targets(load_dataset("segmentation", synthetic / "panoptic.json"))
    boxes = targets(load_dataset("detection", synthetic / "instances.json"))
    for mask, segments, box_target in zip(masks, panoptic, boxes):
        assert isinstance(mask, LabelTargets) and mask.labels.dtype == np.int64 and mask.ignore == 255
        np.testing.assert_array_equal(mask.labels, segments.labels)
        for label in range(1, len(SEGMENTATION)):  # each class's pixels span exactly its boxes
            ys, xs = np.nonzero(mask.labels == label)
            of_class = box_target.boxes[box_target.labels == label - 1]
            if not len(of_class):
                assert not len(xs)
                continue
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == \
                [*of_class[:, :2].min(0), *of_class[:, 2:].max(0)]


def test_depth_png_reads_in_metres(synthetic):
    dataset = load_dataset("depth", synthetic)
    for sample in dataset.samples:
        target = sample.load_target()
        millimetres = cv2.imread(str(synthetic / "depth" / sample.name), cv2.IMREAD_UNCHANGED)
        assert isinstance(target, DepthTargets) and target.depth.dtype == np.float32
        np.testing.assert_allclose(target.depth, millimetres / 1000.0, rtol=1e-6)
        assert target.valid.all() and 1.5 < target.depth.min() and target.depth.max() <= 10.0
        assert target.depth[0].mean() > target.depth[-1].mean()  # the floor comes nearer towards the bottom


def test_depth_npy_reads_in_metres(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((4, 6, 3), np.uint8))
    metres = np.linspace(0.5, 3.0, 24, dtype=np.float64).reshape(4, 6)
    np.save(tmp_path / "depth" / "a.npy", metres)
    dataset = load_dataset("depth", tmp_path)
    assert dataset.samples[0].target_file == tmp_path / "depth" / "a.npy"
    target = dataset.samples[0].load_target()
    assert target.depth.dtype == np.float32
    np.testing.assert_allclose(target.depth, metres, rtol=1e-6)
    assert check_samples(dataset) == [(4, 6)]


def test_split_is_seeded_and_disjoint(synthetic):
    dataset = load_dataset("detection", synthetic / "instances.json")
    train, val = dataset.split(0.25, seed=3)
    assert len(val) == 2 and len(train) == 6 and not set(names(train)) & set(names(val))
    assert sorted(names(train) + names(val)) == names(dataset)
    assert names(dataset.split(0.25, seed=3)[1]) == names(val)
    assert {tuple(names(dataset.split(0.25, seed=s)[1])) for s in range(6)} != {tuple(names(val))}


# Bad data: (task, data, how to damage the fresh set, what the message must name). Each is found by
# load_dataset, before any pixel is decoded.
def drop(relative: str):
    return lambda root: (root / relative).unlink()


def write(relative: str, text: str):
    return lambda root: (root / relative).write_text(text)


def empty(folder: str):
    def damage(root: Path) -> None:
        for path in (root / folder).iterdir():
            path.unlink()
    return damage


def set_annotation(**values):
    return lambda root: edit_json(root / "instances.json", lambda raw: raw["annotations"][0].update(values))


def set_voc(tag: str, value: str):
    def damage(root: Path) -> None:
        path = root / "voc" / "Annotations" / "img_001.xml"
        path.write_text(re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", path.read_text(), count=1))
    return damage


def no_coco_images(root: Path) -> None:
    edit_json(root / "instances.json", lambda raw: raw.update(images=[], annotations=[]))


def unknown_segment_category(root: Path) -> None:
    edit_json(root / "panoptic.json", lambda raw: raw["annotations"][1]["segments_info"][0].update(category_id=7))


LOAD_ERRORS = {
    "coco missing image": ("detection", "instances.json", drop("images/img_001.png"),
                           ["instances.json", "image id 2, 'img_001.png'", "does not exist"]),
    "voc missing image": ("detection", "voc", drop("voc/JPEGImages/img_001.png"),
                          ["img_001.xml", "filename 'img_001.png'", "does not exist"]),
    "coco box out of range": ("detection", "instances.json", set_annotation(bbox=[100, 10, 40, 20]),
                              ["instances.json", "annotation id 1, image 'img_000.png'", "outside the image"]),
    "coco degenerate box": ("detection", "instances.json", set_annotation(bbox=[10, 10, 0, 20]),
                            ["annotation id 1", "empty"]),
    "coco unknown category": ("detection", "instances.json", set_annotation(category_id=9),
                              ["instances.json", "annotation id 1", "unknown class", "category id 9"]),
    "voc box out of range": ("detection", "voc", set_voc("xmax", "300"),
                             ["img_001.xml", "object 1", "outside the image"]),
    "voc malformed": ("detection", "voc", write("voc/Annotations/img_002.xml", "<a>"),
                      ["img_002.xml", "not a readable XML"]),
    "coco malformed": ("detection", "instances.json", write("instances.json", "{"),
                       ["instances.json", "not a readable JSON"]),
    "coco empty": ("detection", "instances.json", no_coco_images, ["instances.json", "no images"]),
    "voc empty": ("detection", "voc", empty("voc/Annotations"), ["Annotations", "empty"]),
    "masks empty": ("segmentation", ".", empty("images"), ["images", "empty"]),
    "panoptic unknown category": ("segmentation", "panoptic.json", unknown_segment_category,
                                  ["panoptic.json", "image 'img_001.png', segment id", "unknown class"]),
    "panoptic missing png": ("segmentation", "panoptic.json", drop("panoptic/img_002.png"),
                             [str(Path("panoptic") / "img_002.png"), "does not exist"]),
    "mask missing": ("segmentation", ".", drop("masks/img_002.png"),
                     [str(Path("masks") / "img_002.png"), "image 'img_002.png'", "does not exist"]),
    "depth missing": ("depth", ".", drop("depth/img_000.png"),
                      [str(Path("depth") / "img_000.png"), "image 'img_000.png'", "nor does img_000.npy"]),
}


@pytest.mark.parametrize("case", LOAD_ERRORS)
def test_bad_data_is_named_when_loading(fresh, case):
    task, data, damage, named = LOAD_ERRORS[case]
    damage(fresh)
    with pytest.raises(DataError) as error:
        load_dataset(task, fresh / data)
    for text in named:
        assert text in str(error.value)


def test_voc_name_not_in_the_class_list(fresh):
    with pytest.raises(DataError, match=r"img_\d+\.xml \(object \d\): unknown class '(square|disc|triangle)'"):
        load_dataset("detection", fresh / "voc", classes=write_lines(fresh / "two.txt", "cat", "dog"))


def test_coco_category_not_in_the_class_list(fresh):
    dataset = load_dataset("detection", fresh / "instances.json", classes=write_lines(fresh / "c.txt", *SHAPES[::-1]))
    assert dataset.class_names == SHAPES[::-1]
    with pytest.raises(DataError, match=r"annotation id \d+, image 'img_\d+\.png'.*unknown class: category"):
        load_dataset("detection", fresh / "instances.json", classes=write_lines(fresh / "one.txt", "square"))


def test_unknown_format_says_what_was_expected(fresh):
    with pytest.raises(DataError, match="is no detection data set; expected a COCO instances .json file, or a "
                                        "Pascal VOC folder"):
        load_dataset("detection", fresh / "images")
    with pytest.raises(DataError, match="segmentation needs COCO panoptic"):
        load_dataset("segmentation", fresh / "instances.json")
    with pytest.raises(DataError, match="does not exist; expected a folder with images/ and depth/"):
        load_dataset("depth", fresh / "nothing")
    with pytest.raises(DataError, match="unknown task 'embedding'"):
        load_dataset("embedding", fresh)
    with pytest.raises(DataError, match=r"is no flow data set; expected a folder with images/, previous/"):
        load_dataset("flow", fresh)


def test_class_list_lines_are_class_indices(fresh):
    with pytest.raises(DataError, match=r"c\.txt \(line 2\): is blank"):
        load_dataset("segmentation", fresh, classes=write_lines(fresh / "c.txt", "background", "", "disc"))
    with pytest.raises(DataError, match=r"c\.txt \(line 3\): repeats 'disc'"):
        load_dataset("segmentation", fresh, classes=write_lines(fresh / "c.txt", "background", "disc", "disc"))
    with pytest.raises(DataError, match="depth data has no classes"):
        load_dataset("depth", fresh, classes=fresh / "classes.txt")


# Bad pixels: found by check_samples, which decodes everything and reports every problem at once.
def write_mask(root: Path, name: str, mask: np.ndarray) -> None:
    cv2.imwrite(str(root / "masks" / name), mask)


def test_check_samples_names_bad_masks(fresh):
    (fresh / "masks" / "img_000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    write_mask(fresh, "img_001.png", np.zeros((50, 60), np.uint8))
    write_mask(fresh, "img_002.png", np.full((96, 128), 7, np.uint8))
    dataset = load_dataset("segmentation", fresh)  # the files exist: reading them is check_samples' job
    with pytest.raises(DataError) as error:
        check_samples(dataset)
    message = str(error.value)
    assert "3 problem(s) in 3 samples" in message
    assert f"{Path('masks') / 'img_000.png'}: PNG" in message  # caught by the integrity check, before decoding
    assert f"{Path('masks') / 'img_001.png'} (image 'img_001.png'): is 50x60 but its image is 96x128 " \
           "(height x width)" in message
    assert f"{Path('masks') / 'img_002.png'} (image 'img_002.png'): has label(s) [7]" in message


def test_check_samples_accepts_ignore_but_not_other_labels(fresh):
    mask = cv2.imread(str(fresh / "masks" / "img_000.png"), cv2.IMREAD_UNCHANGED)
    mask[:5] = 255
    write_mask(fresh, "img_000.png", mask)
    check_samples(load_dataset("segmentation", fresh))
    write_mask(fresh, "img_000.png", mask.astype(np.uint16))  # 16-bit: 255 is a label like any other
    with pytest.raises(DataError, match=r"has label\(s\) \[255\]"):
        check_samples(load_dataset("segmentation", fresh))


def test_check_samples_checks_boxes_against_the_decoded_image(fresh):
    # The JSON declares the image larger than it is: the box fits the declared size, not the pixels.
    edit_json(fresh / "instances.json", lambda raw: [image.update(width=400) for image in raw["images"]])
    set_annotation(bbox=[150, 10, 40, 20])(fresh)
    where = r"instances\.json \(image 'img_000\.png', object 1\)"
    with pytest.raises(DataError, match=where + ": box .* reaches outside"):
        check_samples(load_dataset("detection", fresh / "instances.json"))


def test_check_samples_lists_ten_problems_and_counts_all(tmp_path):
    root = make_synthetic(tmp_path, images=12)
    for image in (root / "images").iterdir():
        image.write_bytes(b"not an image")
    with pytest.raises(DataError) as error:
        check_samples(load_dataset("depth", root))
    message = str(error.value)
    assert "12 problem(s) in 12 samples" in message and "... and 2 more" in message
    assert message.count("cannot be decoded") == 10 and "img_009.png" in message and "img_010.png" not in message


def test_check_samples_refuses_an_image_whose_size_differs_from_its_annotation(fresh):
    edit_json(fresh / "instances.json", lambda raw: raw["images"][2].update(width=256, height=192))
    with pytest.raises(DataError) as e:
        check_samples(load_dataset("detection", fresh / "instances.json"))
    assert "instances.json (image 'img_002.png')" in str(e.value) and "192x256 but it is 96x128" in str(e.value)


def test_panoptic_classes_must_begin_with_background(fresh):
    classes = write_lines(fresh / "names.txt", "square", "disc", "triangle")
    with pytest.raises(DataError, match="need 'background' first"):
        load_dataset("segmentation", fresh / "panoptic.json", classes=classes)


def test_flow_pairs_read_with_the_frame_before_and_bad_ones_are_named(fresh):
    data = load_dataset("flow", fresh / "flow_pairs")
    assert len(data) == 3 and data.class_names == () and data.task == "flow"  # `fresh` has 3 images
    sample = data.samples[0]
    assert sample.previous == fresh / "flow_pairs" / "previous" / "img_000.png"
    flow = sample.load_target().flow
    assert flow.shape == (96, 128, 2) and len(np.unique(flow.reshape(-1, 2), axis=0)) == 1  # one whole motion
    assert check_samples(data) == [(96, 128)] * 3
    np.save(fresh / "flow_pairs" / "flow" / "img_001.npy", np.zeros((10, 10, 2), np.float32))
    (fresh / "flow_pairs" / "previous" / "img_002.png").unlink()
    with pytest.raises(DataError, match=r"previous \(image 'img_002.png'\): needs exactly one image"):
        load_dataset("flow", fresh / "flow_pairs")
    (fresh / "flow_pairs" / "images" / "img_002.png").unlink()
    (fresh / "flow_pairs" / "flow" / "img_002.npy").unlink()
    with pytest.raises(DataError, match=r"img_001.npy \(image 'img_001.png'\): is 10x10x2 but its image is 96x128"):
        check_samples(load_dataset("flow", fresh / "flow_pairs"))


def test_a_truncated_training_image_is_refused_by_name(tmp_path):
    """OpenCV 4 would decode it into a half-grey picture, and the head would learn from that."""
    ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.tobytes()[: data.size // 2])
    with pytest.raises(DataError, match=r"cut.jpg: JPEG ends before its end-of-image marker: truncated"):
        read_image(path)
