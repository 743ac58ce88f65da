"""ROS names are checked before anything is written: namespaces, topic names and head names."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dinov3_ros.bag import BagOutput
from dinov3_ros.cli.command import build_parser
from dinov3_ros.names import InvalidName, check_full_topic_name, check_namespace, join_topic
from dinov3_toolkit.heads.base import HeadError
from dinov3_toolkit.heads.manifest import load_manifest

# Names built from ROS's own alphabet and a few characters it refuses, so that both sides of every rule come up.
_NAMES = st.text(alphabet="ab_Z09/-~{} .", max_size=12).map(lambda s: s.replace(".", "")) | st.sampled_from(
    ["/", "//", "/a/", "/a//b", "/1a", "/a1", "/_a", "/a/_1", "", "/" + "a" * 244, "/" + "a" * 245,
     "/" + "a" * 246, "/" + "a" * 247, "/a-b", "/\u00e9"])


def _rclpy_validators():
    try:
        from rclpy.validate_full_topic_name import validate_full_topic_name
        from rclpy.validate_namespace import validate_namespace
    except ImportError as e:  # the wheels are set up by `make ros`; CI has them
        pytest.skip(f"rclpy is not installed ({e}); run `make ros` to compare with ROS's own validators")
    return validate_namespace, validate_full_topic_name


def _accepted(check, name) -> bool:
    try:
        check(name)
    except Exception:  # rclpy's InvalidNamespaceException / InvalidTopicNameException, or our InvalidName
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_NAMES)
def test_namespaces_follow_ros_s_own_validator(name):
    validate_namespace, _ = _rclpy_validators()
    absolute = name.startswith("/")
    ours = _accepted(check_namespace, name) if absolute else None
    if absolute:
        assert ours == _accepted(validate_namespace, name), name


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_NAMES)
def test_full_topic_names_follow_ros_s_own_validator(name):
    _, validate_full_topic_name = _rclpy_validators()
    assert _accepted(check_full_topic_name, name) == _accepted(validate_full_topic_name, name), name


@pytest.mark.parametrize("namespace, reason", [
    ("/a-b", "may hold only letters, digits, '_' and '/': '-' at index 2"),
    ("/a//b", "must not hold '//'"),
    ("/1robot", "may begin with a digit"),
    ("/robot/", "must not end with '/'"),
    ("/" + "a" * 245, "must not be longer than 245 characters"),
])
def test_a_bad_namespace_is_refused_with_the_rule(namespace, reason):
    with pytest.raises(InvalidName, match=f"is not a valid ROS 2 namespace: .*{reason[:20]}"):
        check_namespace(namespace)


def test_relative_namespaces_are_taken_as_a_node_takes_them():
    assert check_namespace("dinov3") == "/dinov3"
    assert check_namespace("") == "/"
    assert join_topic("/", "detection/detections") == "/detection/detections"
    assert join_topic("robot1", "depth/depth") == "/robot1/depth/depth"


def test_the_command_refuses_a_bad_namespace_before_it_runs(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", "x", "--namespace", "/my-robot"])
    assert exit_.value.code == 2
    assert "argument --namespace: '/my-robot' is not a valid ROS 2 namespace" in capsys.readouterr().err


def test_a_bag_with_a_bad_namespace_is_never_started(tiny_engine, tmp_path):
    """rosbags would write any string as a topic: the bag would only fail when someone played it."""
    with pytest.raises(InvalidName, match="'/2nd' is not a valid ROS 2 namespace"):
        BagOutput(tmp_path / "bag", tiny_engine.heads, namespace="/2nd")
    with pytest.raises(InvalidName, match="'/camera//image' is not a valid ROS 2 topic name"):
        BagOutput(tmp_path / "bag", tiny_engine.heads, image_topic="/camera//image")
    assert not (tmp_path / "bag").exists()


def test_a_head_whose_name_cannot_name_topics_is_refused_by_name(tmp_path):
    folder = tmp_path / "head_my-head"
    folder.mkdir()
    (folder / "head.yaml").write_text("task: detection\nmodel: model.Head\nlayers: [-1]\n")
    with pytest.raises(HeadError, match=r"head's name must be letters, digits and '_'.*'my-head/detections'"):
        load_manifest(folder)
