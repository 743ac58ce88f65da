"""head.yaml parsing and parameter validation, and a depth head's stated meaning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from doc_pages import section
from dinov3_toolkit.heads import HeadError, ParamSpec, load_manifest
from dinov3_toolkit.head_depth.model import DepthHeadLite
from dinov3_toolkit.heads.loader import BUILTIN_DIR, find_head_folders, load_head
from dinov3_toolkit.preprocess import PreparedImage
from dinov3_toolkit.results import DepthMap, DepthMeaning

PROBE = Path(__file__).resolve().parents[1] / "examples" / "head_linear_probe"


def test_example_manifest_is_complete():
    m = load_manifest(PROBE)
    assert (m.name, m.task, m.module, m.class_name) == ("linear_probe", "segmentation", "model", "LinearProbe")
    assert m.args == {"in_channels": 384} and m.layers == (-1,)
    assert m.weights == PROBE / "weights" / "model.safetensors" and m.module_path == PROBE / "model.py"
    assert m.read_class_names() == ("background", "floor", "obstacle")
    assert m.params["min_confidence"] == ParamSpec("min_confidence", 0.0, m.params["min_confidence"].description,
                                                   0.0, 1.0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "must be a YAML mapping"),
        ("task: depth\n", "needs 'model'"),
        ("task: depth\nmodel: Depth\n", "'model' must be <module>.<Class>"),
        ("task: depth\nmodel: m.D\nweight: w.pth\n", "unknown key(s) ['weight']"),
        ("task: depth\nmodel: m.D\nlayers: -1\n", "'layers' must be a non-empty list"),
        ("task: depth\nmodel: m.D\nlayers: [1.5]\n", "'layers' must be a non-empty list"),
        ("task: depth\nmodel: m.D\nargs: [1]\n", "'args' must be a mapping"),
        ("task: depth\nmodel: m.D\ntrained_on: {backbone: x, fps: 3}\n", "'trained_on' may only hold"),
        ("task: depth\nmodel: m.D\nparams: {t: 0.5}\n", "parameter 't' must be a mapping with 'default'"),
        ("task: depth\nmodel: m.D\nparams: {t: {default: [1]}}\n", "default must be a bool, int, float or string"),
        ("task: depth\nmodel: m.D\nparams: {t: {default: 2.0, max: 1.0}}\n", "default of parameter t must be in"),
        ("task: depth\nmodel: m.D\nparams: {t: {default: 0.5, min: low}}\n", "'min' needs a numeric default"),
        ("task: depth\nmodel: m.D\nparams: {t: {default: a, max: 3}}\n", "'max' needs a numeric default"),
        ("task: depth\nmodel: m.D\nparams: {t: {default: a, choices: 5}}\n", "'choices' must be a list"),
        ("task: depth\nmodel: m.D\nweights: /etc/model.pth\n", "'weights' must be a file name relative to"),
        ("task: depth\nmodel: m.D\nclasses: ../names.txt\n", "'classes' must be a file name relative to"),
        ("task: depth\nmodel: m.D\n\xff\n", "is not valid YAML"),
        ("task: depth\nmodel: m.D\nthreshold_param: t\n", "'threshold_param' must name one of its numeric params []"),
        ("task: depth\nmodel: m.D\nparams: {t: {default: 0.5}}\nthreshold_param: [t]\n",
         "'threshold_param' must name one of its numeric params ['t'], got ['t']"),
        ("task: depth\nmodel: m.D\nparams: {t: {default: a}, u: {default: 0.5}}\nthreshold_param: t\n",
         "'threshold_param' must name one of its numeric params ['u'], got 't'"),
        ("task: detection\nmodel: m.D\ndepth: {unit: m, kind: metric}\n", "but the task is 'detection'"),
        ("task: depth\nmodel: m.D\ndepth: m\n", "'depth' must be a mapping with 'unit'"),
        ("task: depth\nmodel: m.D\ndepth: {unit: m}\n", "'depth' must be a mapping with 'unit'"),
        ("task: depth\nmodel: m.D\ndepth: {unit: m, kind: absolute}\n",
         "depth kind must be one of metric, relative, inverse, got 'absolute'"),
        ("task: depth\nmodel: m.D\ndepth: {unit: '', kind: metric}\n", "metric depth needs its unit"),
        ("task: depth\nmodel: m.D\ndepth: {unit: 1, kind: relative}\n", "depth unit must be a string, got 1"),
    ],
)
def test_bad_manifests_name_the_file_and_the_problem(tmp_path, text, message):
    folder = tmp_path / "head_x"
    folder.mkdir()
    (folder / "head.yaml").write_bytes(text.encode("latin-1"))
    with pytest.raises(HeadError) as e:
        load_manifest(folder)
    assert message in str(e.value) and str(folder / "head.yaml") in str(e.value) and "'x'" in str(e.value)


def test_missing_manifest(tmp_path):
    (tmp_path / "head_y").mkdir()
    with pytest.raises(HeadError, match="no head.yaml in the head folder"):
        load_manifest(tmp_path / "head_y")


def test_head_folder_needs_the_prefix(tmp_path):
    shutil.copytree(PROBE, tmp_path / "my_probe")
    with pytest.raises(HeadError, match=r"head 'my_probe' .*: a head folder's name must be head_<name>"):
        load_manifest(tmp_path / "my_probe")


def test_class_names_that_are_not_utf8(tmp_path):
    shutil.copytree(PROBE, tmp_path / "head_probe")
    (tmp_path / "head_probe" / "class_names.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(HeadError, match="cannot be read as UTF-8 text"):
        load_manifest(tmp_path / "head_probe").read_class_names()


@pytest.mark.parametrize(
    "default, value, expected",
    [(0.5, 1, 1.0), (0.5, 0.25, 0.25), (3, 4, 4), (True, False, False), ("a", "b", "b")],
)
def test_param_values_keep_their_type(default, value, expected):
    result = ParamSpec("p", default).validate(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    "spec, value, message",
    [
        (ParamSpec("p", 3), True, "p must be of type int, got True"),
        (ParamSpec("p", 3), 2.5, "p must be of type int, got 2.5"),
        (ParamSpec("p", False), 1, "p must be of type bool, got 1"),
        (ParamSpec("p", 0.5), "0.7", "p must be of type float, got '0.7'"),
        (ParamSpec("p", 0.5, min=0.0, max=1.0), float("nan"), "p must be a finite number, got nan"),
        (ParamSpec("p", 0.5, min=0.0, max=1.0), 1.5, r"p must be in \[0.0, 1.0\], got 1.5"),
        (ParamSpec("p", 0.5, min=0.0, max=1.0), -0.1, r"p must be in \[0.0, 1.0\]"),
        (ParamSpec("p", "a", choices=("a", "b")), "c", r"p must be one of \['a', 'b'\], got 'c'"),
    ],
)
def test_param_values_are_validated(spec, value, message):
    with pytest.raises(ValueError, match=message):
        spec.validate(value)


@pytest.mark.parametrize("arg", ["num_classes: 4", "class_names: [a, b]"])
def test_class_names_reach_a_head_one_way_only(tmp_path, arg):
    """From the classes file, as the constructor's class_names: args may not say it a second way."""
    folder = tmp_path / "head_probe"
    shutil.copytree(PROBE, folder)
    (folder / "head.yaml").write_text((folder / "head.yaml").read_text().replace("in_channels: 384",
                                                                                f"in_channels: 384\n  {arg}"))
    with pytest.raises(HeadError, match=f"args must not set {arg.split(':')[0]}: the names in class_names.txt "
                                        "reach LinearProbe as class_names"):
        load_head(load_manifest(folder), random_weights=True)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # its classifier gets 0 classes
def test_a_head_that_drops_its_class_names_is_refused(tmp_path):
    folder = tmp_path / "head_probe"
    shutil.copytree(PROBE, folder)
    model = folder / "model.py"
    model.write_text(model.read_text().replace("super().__init__(class_names)", "super().__init__()"))
    with pytest.raises(HeadError, match="LinearProbe.__init__ must pass class_names to Head.__init__"):
        load_head(load_manifest(folder), random_weights=True)


def test_the_loaded_head_has_the_manifests_class_names(tmp_path):
    head = load_head(load_manifest(PROBE), random_weights=True)
    assert head.class_names == ("background", "floor", "obstacle")
    assert head.model.classifier.out_channels == 3


def test_missing_class_names_file(tmp_path):
    folder = tmp_path / "head_probe"
    shutil.copytree(PROBE, folder)
    (folder / "class_names.txt").unlink()
    with pytest.raises(HeadError, match="class names file does not exist"):
        load_head(load_manifest(folder), random_weights=True)


def test_constructor_arguments_that_do_not_fit(tmp_path):
    folder = tmp_path / "head_probe"
    shutil.copytree(PROBE, folder)
    (folder / "head.yaml").write_text((folder / "head.yaml").read_text().replace("in_channels:", "channels_in:"))
    with pytest.raises(HeadError, match=r"LinearProbe\(\*\*args\) failed: TypeError"):
        load_head(load_manifest(folder), random_weights=True)


def test_class_that_is_not_a_head(tmp_path):
    folder = tmp_path / "head_probe"
    shutil.copytree(PROBE, folder)
    (folder / "model.py").write_text("class LinearProbe:\n    pass\n")
    with pytest.raises(HeadError, match="has no class LinearProbe derived from dinov3_toolkit.heads.Head"):
        load_head(load_manifest(folder), random_weights=True)


def test_extra_folder_may_be_a_head_or_hold_heads(tmp_path):
    shutil.copytree(PROBE, tmp_path / "many" / "head_a")
    shutil.copytree(PROBE, tmp_path / "many" / "head_b")
    (tmp_path / "many" / "not_a_head").mkdir()
    folders = find_head_folders([tmp_path / "many", PROBE])
    assert [f.name for f in folders[-3:]] == ["head_a", "head_b", "head_linear_probe"]
    with pytest.raises(FileNotFoundError, match="head folder .* does not exist"):
        find_head_folders([tmp_path / "nowhere"])


@pytest.mark.parametrize("name", ["head.yaml", "model.py", "loss.py", "class_names.txt"])
def test_the_docs_show_the_example_head_as_it_is(name):
    """The example in docs/write_a_head.md ("A complete example") is the tested folder, verbatim."""
    assert (PROBE / name).read_text().rstrip("\n") in section("A complete example")


def test_a_head_without_postprocess_is_refused_at_load(tmp_path):
    folder = tmp_path / "head_probe"
    shutil.copytree(PROBE, folder)
    model = folder / "model.py"
    model.write_text(model.read_text().replace("def postprocess(", "def post_process("))
    with pytest.raises(HeadError, match=r"LinearProbe\(\*\*args\) failed: TypeError: .*abstract.*postprocess"):
        load_head(load_manifest(folder), random_weights=True)


def test_a_depth_head_states_what_its_values_mean(tmp_path):
    assert load_manifest(BUILTIN_DIR / "head_depth").depth == DepthMeaning("", "relative")  # scale undocumented
    folder = tmp_path / "head_metric"
    folder.mkdir()
    (folder / "head.yaml").write_text("task: depth\nmodel: m.D\ndepth: {unit: m, kind: metric}\n")
    assert load_manifest(folder).depth == DepthMeaning("m", "metric")
    (folder / "head.yaml").write_text("task: depth\nmodel: m.D\n")
    assert load_manifest(folder).depth is None  # unstated: the model's own default
    assert DepthMeaning("1/m", "inverse").describe() == "inverse depth (1/m)"


def test_the_loader_hands_the_manifest_s_depth_meaning_to_the_model(tmp_path):
    folder = tmp_path / "head_metric"
    shutil.copytree(BUILTIN_DIR / "head_depth", folder, ignore=shutil.ignore_patterns("weights"))
    manifest = folder / "head.yaml"
    text = manifest.read_text().replace('depth: {unit: "", kind: relative}', "depth: {unit: m, kind: metric}")
    manifest.write_text(text.replace("in_channels: 384", "in_channels: 16"))
    assert load_head(load_manifest(folder), random_weights=True).model.meaning == DepthMeaning("m", "metric")
    manifest.write_text(manifest.read_text().replace("in_channels: 16", "in_channels: 16\n  depth: 1"))
    with pytest.raises(HeadError, match="args must not set depth"):
        load_head(load_manifest(folder), random_weights=True)


def test_the_depth_head_puts_its_meaning_on_every_result():
    model = DepthHeadLite(in_channels=16, depth=DepthMeaning("m", "metric")).eval()
    image = PreparedImage(tensor=torch.zeros(1, 3, 32, 32), original_size=(24, 40), input_size=(32, 32))
    with torch.no_grad():
        result = model.postprocess(model([torch.randn(1, 16, 2, 2)]), image, {})
    assert isinstance(result, DepthMap) and (result.unit, result.kind) == ("m", "metric")
    assert DepthHeadLite(in_channels=16).meaning == DepthMeaning("", "relative")
    with pytest.raises(TypeError, match="DepthMeaning"):
        DepthHeadLite(in_channels=16, depth={"unit": "m", "kind": "metric"})
