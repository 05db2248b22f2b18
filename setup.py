from setuptools import find_packages, setup

setup(
    name="mindcv_lite",
    version="0.1.0",
    description="MindSpore model zoo for PiT and PVT vision transformers",
    packages=find_packages(include=["mindcv_lite", "mindcv_lite.*"]),
    # the demo's recipe ships inside the package (python -m mindcv_lite.demo works without a source checkout)
    package_data={"mindcv_lite": ["recipes/*.yaml"]},
    python_requires=">=3.9",
    install_requires=[
        "mindspore>=2.10,<2.11",
        # MindSpore 2.10 wheels are built against NumPy 1.x: under NumPy 2 the first op raises SystemError.
        "numpy<2",
        "pyyaml",
        "tqdm",
        "pillow",
        # weight interchange with PyTorch/timm checkpoints without needing torch
        "safetensors",
        # curves.png of every run and `python -m mindcv_lite.plot` (Agg backend, no display needed)
        "matplotlib",
    ],
    # onnxruntime runs the exported ONNX files in tests/test_export.py
    extras_require={"test": ["pytest", "onnxruntime"]},
)
