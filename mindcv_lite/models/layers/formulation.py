"""Which formulation the shared convolution layers compute with: MindSpore's native kernels or the CPU rewrites.

On Ascend and GPU the native `Conv2D` (symmetric padding, grouped for depthwise) is the fast and memory-lean path.
MindSpore 2.10's CPU `Conv2D` is pathologically slow for the strided patch embeddings (3->64, k16 s8 on
16x3x224x224: 2.2 s against 9 ms in PyTorch) and for grouped convolutions (PVTv2's 3x3 depthwise: over half of
pvt_v2_b0's inference time), so on CPU the layers use matmul / multiply-add rewrites with the same parameters.
"""
import mindspore as ms


def use_native_conv():
    """True unless MindSpore runs on CPU; read once, when a layer is built (after the device is set)."""
    return ms.get_context("device_target") != "CPU"
