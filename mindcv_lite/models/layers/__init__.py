"""Transformer building blocks shared by every model family (PiT, PVT, PVTv2)."""
from .attention import Attention, LinearSRAttention, SpatialReductionAttention
from .block import Block
from .depthwise_conv import DepthwiseConv2d
from .drop_path import DropPath
from .init import init_weights, trunc_normal
from .linear import Linear
from .mlp import Mlp, MlpWithDepthwiseConv
from .norm import LayerNorm
from .patch_conv import PatchConv2d
from .pos_embed import resample_pos_embed_grid, resize_pos_embed_bilinear

__all__ = [
    "Attention",
    "Block",
    "DepthwiseConv2d",
    "DropPath",
    "LayerNorm",
    "Linear",
    "LinearSRAttention",
    "Mlp",
    "MlpWithDepthwiseConv",
    "PatchConv2d",
    "SpatialReductionAttention",
    "init_weights",
    "resample_pos_embed_grid",
    "resize_pos_embed_bilinear",
    "trunc_normal",
]
