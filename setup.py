"""One package, two ways in: `colcon build` (ament_python) and `pip install`.

Runtime dependencies are listed loosely so that a user's pip resolves the build
of torch that fits their machine (CUDA on a GPU box); the Makefile pins the
exact versions used in development and CI.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dinov3_ros"
# requirements.txt lists what rosdep cannot provide (ROS users pip-install it into a venv);
# numpy and OpenCV come from apt under ROS (package.xml) and from PyPI here.
REQUIREMENTS = [
    line.split("#")[0].strip()
    for line in (Path(__file__).parent / "requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="DINOv3 backbone once per frame, plug-in heads, ROS 2 messages",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dinov3_toolkit", "dinov3_toolkit.*", "dinov3_ros", "dinov3_ros.*"]),
    # Head folders ship whole, found by pattern, so that adding one never needs an edit here.
    package_data={
        "dinov3_toolkit": ["offline/samples/*.jpg", "offline/*.schema.json",
                           *(f"{folder}head_*/{files}" for folder in ("", "templates/")
                             for files in ("*.py", "*.yaml", "*.txt", "weights/README.md"))]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "requirements.txt"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", [*glob("config/*.yaml"), *glob("config/*.rviz")]),
        (f"share/{PACKAGE}/weights", ["weights/README.md"]),
    ],
    install_requires=[*REQUIREMENTS, "numpy>=1.21", "opencv-python-headless>=4.6", "pyyaml>=5.4", "tqdm>=4.60"],
    extras_require={
        "export": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.17"],  # `dinov3 export`
        "bench": ["matplotlib>=3.5", "transformers>=5.0"],  # `dinov3 bench`: the plot, stage (e)
        "train": ["pycocotools>=2.0.7", "matplotlib>=3.5", "scipy>=1.7"],  # eval's COCO mAP, plots; DETR matching
        "test": ["pytest>=7", "hypothesis>=6.84", "transformers>=5.0", "setuptools>=64", "wheel", "jsonschema>=4",
                 "onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.17", "matplotlib>=3.5",
                 "pycocotools>=2.0.7", "tensorboard>=2.10", "scipy>=1.7",  # eval's mAP, TensorBoard, DETR
                 "colcon-common-extensions>=0.3"],  # test_colcon builds the package as ROS users do
    },
    zip_safe=False,  # head folders are found and imported from the file system
    entry_points={
        "console_scripts": [
            "dinov3 = dinov3_ros.cli:main",  # no ROS needed (docs/offline.md)
            "dinov3_node = dinov3_ros.node:main",  # ROS 2 only (needs rclpy); colcon puts it in lib/dinov3_ros
        ],
    },
)
