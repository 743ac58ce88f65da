"""Fuzzing head.yaml: any content is a valid manifest or a HeadError naming the file and the key at fault.

A head folder is dropped in by a user, so its manifest may hold anything YAML can say: wrong
types, missing keys, NaN, min above max, unknown keys, numbers too big for a ROS parameter. Three
properties: an arbitrary mapping (or no mapping at all) loads or fails as a ``HeadError`` that
names the file, never another exception; a valid manifest with one named fault fails naming the
key (or parameter) at fault; and a parameter of a manifest that loads validates any value into
its type or refuses it with a ``ConfigError``, as the node's live parameter changes need.
"""

from __future__ import annotations

import math

import pytest
import yaml
from fuzzing import examples
from hypothesis import event, given
from hypothesis import strategies as st

from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.heads import HeadError, load_manifest
from dinov3_toolkit.heads.manifest import HeadManifest

KEYS = ["description", "task", "model", "args", "classes", "weights", "layers", "trained_on", "params",
        "threshold_param", "loss", "loss_args", "provenance"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
                    st.sampled_from(["model.Head", "weights/w.pth", "../up.txt", "/abs.pth", "-1", ".nan", ""]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6) | st.integers(), inner,
                                                                       max_size=3)), max_leaves=8)
param_entries = st.fixed_dictionaries({}, optional={"default": scalars, "min": scalars, "max": scalars,
                                                    "choices": values, "description": scalars, "step": scalars})
# Values a manifest author would plausibly write, mostly valid, with the edge cases of their type.
numbers = st.one_of(st.integers(-5, 5), st.floats(-5, 5), st.sampled_from([math.nan, math.inf, -math.inf, 2**70]))
plausible_params = st.one_of(
    st.fixed_dictionaries({"default": numbers}, optional={"min": numbers, "max": numbers, "description": st.text()}),
    st.fixed_dictionaries({"default": st.sampled_from(["a", "b"])},
                          optional={"choices": st.lists(st.sampled_from(["a", "b", 1]), max_size=3)}),
    st.fixed_dictionaries({"default": st.booleans()}),
)
params = st.dictionaries(st.text(min_size=1, max_size=5) | st.integers() | st.none(),
                         plausible_params | param_entries | values, max_size=3)
mappings = st.dictionaries(st.text(min_size=1, max_size=5), scalars, max_size=2)
plausible = {
    "description": st.text(max_size=10), "args": mappings, "loss_args": mappings, "provenance": mappings,
    "classes": st.sampled_from(["class_names.txt", "names/coco.txt"]),
    "weights": st.sampled_from(["weights/model.pth", "model.safetensors"]),
    "layers": st.lists(st.integers(-40, 40), min_size=1, max_size=3), "loss": st.just("loss.HeadLoss"),
    "trained_on": st.fixed_dictionaries({}, optional={"backbone": st.sampled_from(["vits16", "vitl16"]),
                                                      "size": st.integers(-1, 2000),
                                                      "resize_mode": st.sampled_from(["stretch", "keep_aspect"])}),
    "threshold_param": st.text(min_size=1, max_size=5), "params": params,
}
required = {"task": st.sampled_from(["detection", "segmentation", "depth", "embedding"]),
            "model": st.sampled_from(["model.Head", "pkg.model.Head", "Head", "model.1Head", ".Head"])}
authored = st.fixed_dictionaries(required, optional=plausible)
near_valid = st.fixed_dictionaries(required, optional={key: strategy | values for key, strategy in plausible.items()})
any_keys = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6) | st.integers(), values, max_size=5)
manifests = st.one_of(authored, near_valid, any_keys, values)

GOOD = {
    "description": "a fuzzed head",
    "task": "detection",
    "model": "model.Head",
    "args": {"in_channels": 384},
    "classes": "class_names.txt",
    "weights": "weights/model.safetensors",
    "layers": [-1, 2],
    "trained_on": {"backbone": "vits16plus", "size": 640, "resize_mode": "stretch"},
    "params": {"score_threshold": {"default": 0.25, "min": 0.0, "max": 1.0, "description": "keep boxes above"},
               "max_detections": {"default": 100, "min": 1, "max": 10000},
               "mode": {"default": "fast", "choices": ["fast", "exact"]},
               "agnostic": {"default": False}},
    "threshold_param": "score_threshold",
}


def write(folder, raw) -> None:
    folder.mkdir(exist_ok=True)
    text = raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    (folder / "head.yaml").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("manifests") / "head_fuzzed"


@examples(300)
@given(raw=manifests)
def test_any_mapping_is_a_manifest_or_a_head_error_naming_the_file(folder, raw):
    write(folder, raw)
    try:
        manifest = load_manifest(folder)
    except HeadError as e:
        assert str(folder / "head.yaml") in str(e) and e.head == "fuzzed"
        event("refused")
        return
    event("loaded")  # --hypothesis-show-statistics: how often each way ends
    assert isinstance(manifest, HeadManifest)
    values_ = manifest.resolve_params()  # every default validates against its own spec
    assert isinstance(manifest.threshold(values_), float)
    for spec in manifest.params.values():
        assert spec.min is None or spec.max is None or spec.min <= spec.max
        assert all(math.isfinite(b) for b in (spec.min, spec.max) if b is not None)
        assert all(spec.validate(choice) == choice for choice in spec.choices)


# One fault each: (what is changed, the words the error must hold besides the file).
def _params(**changes) -> dict:
    return {**GOOD["params"], **changes}


FAULTS = {
    "task missing": ({"task": None}, "'task'"),
    "task not a string": ({"task": 3}, "'task'"),
    "model without a module": ({"model": "Head"}, "'model'"),
    "model not a string": ({"model": ["model", "Head"]}, "'model'"),
    "unknown key": ({"weigths": "w.pth"}, "unknown key(s) ['weigths']"),
    "unknown keys of mixed types": ({1: 2, None: 3, "x": 4}, "unknown key(s) [1, None, 'x']"),
    "args a list": ({"args": [384]}, "'args'"),
    "args with a number for a name": ({"args": {1: 384}}, "'args'"),
    "weights outside the folder": ({"weights": "../other/model.pth"}, "'weights'"),
    "classes an absolute path": ({"classes": "/etc/passwd"}, "'classes'"),
    "weights an empty name": ({"weights": ""}, "'weights'"),
    "layers empty": ({"layers": []}, "'layers'"),
    "layers a float": ({"layers": [1.5]}, "'layers'"),
    "layers a bool": ({"layers": [True]}, "'layers'"),
    "trained_on an unknown key": ({"trained_on": {"fps": 30}}, "'trained_on'"),
    "trained_on size NaN": ({"trained_on": {"size": math.nan}}, "'trained_on' size"),
    "trained_on size negative": ({"trained_on": {"size": -640}}, "'trained_on' size"),
    "trained_on backbone a number": ({"trained_on": {"backbone": 16}}, "'trained_on' backbone"),
    "description a list": ({"description": ["a", "b"]}, "'description'"),
    "params a list": ({"params": ["score_threshold"]}, "'params'"),
    "param named by a number": ({"params": {7: {"default": 1}}}, "parameter names must be non-empty strings"),
    "param with no name": ({"params": {None: {"default": 1}}}, "parameter names must be non-empty strings"),
    "param without a default": ({"params": _params(iou={"min": 0.0})}, "parameter 'iou'"),
    "param with an unknown key": ({"params": _params(iou={"default": 0.5, "step": 0.1})}, "parameter 'iou'"),
    "param default a list": ({"params": _params(iou={"default": [0.5]})}, "parameter 'iou'"),
    "param default NaN": ({"params": _params(iou={"default": math.nan})}, "parameter iou must be a finite number"),
    "param default inf": ({"params": _params(iou={"default": math.inf})}, "parameter iou must be a finite number"),
    "param min above max": ({"params": _params(iou={"default": 0.5, "min": 1.0, "max": 0.0})},
                            "parameter 'iou': 'min' 1.0 is above 'max' 0.0"),
    "param min NaN": ({"params": _params(iou={"default": 0.5, "min": math.nan})}, "parameter 'iou': 'min'"),
    "param max inf": ({"params": _params(iou={"default": 0.5, "max": math.inf})}, "parameter 'iou': 'max'"),
    "param bound for a string": ({"params": _params(mode={"default": "fast", "max": 3})}, "parameter 'mode': 'max'"),
    "param bound a bool": ({"params": _params(iou={"default": 0.5, "min": False})}, "parameter 'iou': 'min'"),
    "param default outside its range": ({"params": _params(iou={"default": 2.0, "max": 1.0})},
                                        "parameter iou must be in"),
    "param default not a choice": ({"params": _params(mode={"default": "slow", "choices": ["fast"]})},
                                   "parameter mode must be one of"),
    "param choices not a list": ({"params": _params(mode={"default": "fast", "choices": "fast"})},
                                 "parameter 'mode': 'choices'"),
    "param choice of another type": ({"params": _params(mode={"default": "fast", "choices": ["fast", 2]})},
                                     "choice 2 of parameter 'mode'"),
    "param default too big for ROS": ({"params": _params(count={"default": 2**70})},
                                      "parameter count must fit a 64-bit integer"),
    "threshold_param not a param": ({"threshold_param": "iou"}, "'threshold_param'"),
    "threshold_param a string param": ({"threshold_param": "mode"}, "'threshold_param'"),
    "threshold_param a bool param": ({"threshold_param": "agnostic"}, "'threshold_param'"),
    "threshold_param a list": ({"threshold_param": ["score_threshold"]}, "'threshold_param'"),
    "loss without a module": ({"loss": "Loss"}, "'loss'"),
    "loss_args a list": ({"loss_args": [1]}, "'loss_args'"),
    "provenance a string": ({"provenance": "trained yesterday"}, "'provenance'"),
}
# Whole files that are no manifest at all.
FILE_FAULTS = {
    "a list": ("- task: detection\n", "must be a YAML mapping, got list"),
    "a number": ("42\n", "must be a YAML mapping, got int"),
    "empty": ("", "must be a YAML mapping, got NoneType"),
    "not YAML": ("task: [detection\nmodel: m.H\n", "is not valid YAML"),
    "a tab for indentation": ("params:\n\tx: 1\n", "is not valid YAML"),
    "a list as a key": ("? [a, b]\n: 1\n", "is not valid YAML"),
    "a Python object tag": ("task: !!python/object:os.system {}\n", "is not valid YAML"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_manifest_with_one_fault_names_the_key(tmp_path, fault):
    change, words = FAULTS[fault]
    write(tmp_path / "head_faulty", {key: value for key, value in {**GOOD, **change}.items() if value is not None})
    with pytest.raises(HeadError) as e:
        load_manifest(tmp_path / "head_faulty")
    assert str(tmp_path / "head_faulty" / "head.yaml") in str(e.value) and words in str(e.value)


@pytest.mark.parametrize("fault", FILE_FAULTS)
def test_a_file_that_is_no_manifest_says_so(tmp_path, fault):
    text, words = FILE_FAULTS[fault]
    write(tmp_path / "head_faulty", text)
    with pytest.raises(HeadError) as e:
        load_manifest(tmp_path / "head_faulty")
    assert str(tmp_path / "head_faulty" / "head.yaml") in str(e.value) and words in str(e.value)


def test_the_good_manifest_loads(tmp_path):
    """The faults above are faults: without one, the same manifest loads."""
    write(tmp_path / "head_good", GOOD)
    manifest = load_manifest(tmp_path / "head_good")
    assert manifest.threshold(manifest.resolve_params()) == 0.25 and manifest.layers == (-1, 2)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> HeadManifest:
    folder = tmp_path_factory.mktemp("good") / "head_good"
    write(folder, GOOD)
    return load_manifest(folder)


@examples(200)
@given(name=st.sampled_from(sorted(GOOD["params"])),
       value=st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=2), scalars)))
def test_a_parameter_takes_any_value_into_its_type_or_refuses_it(good, name, value):
    manifest, spec = good, good.params[name]
    try:
        accepted = spec.validate(value)
    except ConfigError as e:
        assert name in str(e)
    else:
        assert type(accepted) is spec.type and (spec.type is not float or math.isfinite(accepted))
        assert (spec.min is None or accepted >= spec.min) and (spec.max is None or accepted <= spec.max)
    try:
        manifest.resolve_params({name: value})
    except HeadError as e:
        assert str(manifest.path) in str(e) and name in str(e)
