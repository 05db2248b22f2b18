import glob

from setuptools import Extension, find_packages, setup

# The CPU kernels (MindSpore ops.Custom "aot" operators, see mindcv_lite/kernels/__init__.py): a plain C++ shared
# library, built next to its sources by `pip install -e .`. Optional: without a C++ compiler the install still
# succeeds and the layers fall back to their rewrites, with a warning.
cpu_kernels = Extension(
    "mindcv_lite.kernels._cpu_kernels",
    sources=sorted(glob.glob("mindcv_lite/kernels/*.cc")),
    depends=sorted(glob.glob("mindcv_lite/kernels/*.h")),
    language="c++",
    extra_compile_args=["-std=c++17", "-O3", "-pthread"],
    extra_link_args=["-pthread"],
    optional=True,
)

setup(
    name="mindcv_lite",
    version="0.1.0",
    description="MindSpore model zoo for PiT and PVT vision transformers",
    packages=find_packages(include=["mindcv_lite", "mindcv_lite.*"]),
    # the demo's recipe ships inside the package (python -m mindcv_lite.demo works without a source checkout)
    package_data={"mindcv_lite": ["recipes/*.yaml"]},
    ext_modules=[cpu_kernels],
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
    extras_require={"test": ["pytest", "pytest-xdist", "onnxruntime"]},
)
