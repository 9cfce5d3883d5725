"""pip-installable ROS-free core: model, store, tuner engine, policies, simulation, benchmark.

On a robot the package is built with colcon (ament_cmake, see CMakeLists.txt), which also
generates the ROS interfaces and installs the nodes. This file serves machines without ROS:
``pip install .`` gives the learning core, the simulator and ``etuner-bench``.
"""

from setuptools import setup

setup(
    name="etuner_ros",
    version="0.1.0",
    description="Redundancy-aware continual fine-tuning (ETuner) core of etuner_ros",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "etuner_ros",
        "etuner_ros.core",
        "etuner_ros.core.policies",
        "etuner_ros.sim",
        "etuner_ros.bench",
    ],
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "torch>=2.1",
        "torchvision>=0.16",
        "PyYAML>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "rosbags>=0.11.9",
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2"]},
    entry_points={
        "console_scripts": [
            "etuner-pretrain=etuner_ros.sim.pretrain:main",
            "etuner-bench=etuner_ros.bench.__main__:main",
        ]
    },
)
