"""PVTv2: Improved Baselines with Pyramid Vision Transformer (Wang et al., arXiv 2106.13797).

Numerics follow timm's `pvt_v2` (the authors' code): overlapping patch embeddings with symmetric zero padding
(MindSpore's `pad_mode='same'` pads stride-2 convolutions asymmetrically, which shifts every feature map), a
3x3 depthwise convolution in the feed-forward, exact GELU, LayerNorm eps 1e-6 in blocks and stage norms and
1e-5 in patch embeddings and spatial reduction. No position embeddings: any input size runs unchanged.
The model is a loop over timm-like `stages`; parameter names are mindcv's
(`block_list.2.0.mlp.dwconv.dwconv.weight`); `checkpoint_filter_fn` also takes timm's keys
(`stages.2.blocks.0.mlp.dwconv.weight`) and the authors' (`block3.0.mlp.dwconv.dwconv.weight`).
"""
import re

import numpy as np
from mindspore import nn

from .base import VisionModel
from .helpers import build_model_with_cfg
from .layers import Block, LayerNorm, LinearSRAttention, MlpWithDepthwiseConv, PatchConv2d, SpatialReductionAttention
from .registry import pretrained_cfg, register_model

__all__ = ["PyramidVisionTransformerV2"]


class OverlapPatchEmbed(nn.Cell):
    """Stride-`stride` convolution with a larger kernel and symmetric padding `patch_size // 2`, then LayerNorm."""

    def __init__(self, patch_size, stride, in_chans, embed_dim, norm_eps=1e-5, channels_first=False):
        super().__init__()
        self.proj = PatchConv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2,
                                channels_first=channels_first)
        self.norm = LayerNorm(embed_dim, eps=norm_eps)

    def construct(self, x):
        """(B, H, W, C_in) (`channels_first`: images (B, C_in, H, W)) -> (B, ceil(H / stride), ceil(W / stride),
        C)."""
        return self.norm(self.proj(x))


class PvtV2Stage(nn.Cell):
    """One PVTv2 stage: overlapping patch embedding, blocks (spatial-reduction or linear attention, feed-forward
    with a depthwise convolution), LayerNorm."""

    def __init__(self, in_dim, dim, patch_size, stride, depth, num_heads, mlp_ratio, sr_ratio, qkv_bias, linear,
                 drop_rate, attn_drop_rate, drop_path, norm_eps, channels_first=False):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(patch_size, stride, in_dim, dim, channels_first=channels_first)

        def attention():
            if linear:
                return LinearSRAttention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                                         proj_drop=drop_rate)
            return SpatialReductionAttention(dim, num_heads, sr_ratio, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                                             proj_drop=drop_rate)

        self.blocks = nn.CellList([
            Block(dim, attention(), MlpWithDepthwiseConv(dim, int(dim * mlp_ratio), drop=drop_rate, extra_relu=linear),
                  drop_path=drop_path[j], norm_eps=norm_eps)
            for j in range(depth)
        ])
        self.norm = LayerNorm(dim, eps=norm_eps)

    def construct(self, x, tokens):
        """Channels-last map (B, H, W, C_in) (the first stage: the images (B, C_in, H, W)) -> the stage's normalised
        map (B, H', W', C)."""
        x = self.patch_embed(x)
        batch, height, width, dim = x.shape
        x = x.reshape(batch, height * width, dim)
        for block in self.blocks:
            x = block(x, height, width)
        return self.norm(x).reshape(batch, height, width, dim), tokens


class PyramidVisionTransformerV2(VisionModel):
    """Four stages at strides 4, 8, 16, 32: overlapping patch embedding, blocks, LayerNorm; mean-pooled head.

    `linear` selects PVTv2-li: keys and values pooled to 7x7 instead of strided spatial reduction. Without
    position embeddings the network takes any input size; `img_size` only sets the input size of its data config
    (`pretrained_cfg['input_size']`, as for every model).
    """

    def __init__(self, img_size=224, in_chans=3, num_classes=1000, depths=(3, 4, 6, 3), embed_dims=(64, 128, 320, 512),
                 num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1), qkv_bias=True, linear=False,
                 drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_eps=1e-6):
        super().__init__(num_classes, embed_dims[-1])
        lengths = {len(v) for v in (depths, embed_dims, num_heads, mlp_ratios, sr_ratios)}
        if lengths != {4}:
            raise ValueError(f"PVTv2 has 4 stages: depths, embed_dims, num_heads, mlp_ratios and sr_ratios need 4 "
                             f"entries each, got {depths}, {embed_dims}, {num_heads}, {mlp_ratios}, {sr_ratios}")
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        offsets = np.cumsum((0,) + tuple(depths)).tolist()
        in_dims = (in_chans,) + tuple(embed_dims[:3])
        self.stages = nn.CellList([
            PvtV2Stage(in_dims[i], embed_dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2, depths[i], num_heads[i],
                       mlp_ratios[i], sr_ratios[i], qkv_bias, linear, drop_rate, attn_drop_rate,
                       rates[offsets[i]:offsets[i + 1]], norm_eps, channels_first=i == 0)
            for i in range(4)
        ])
        self.head = self.create_head(num_classes)
        self.feature_info = [dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f"stages.{i}")
                             for i in range(4)]
        self.init_model()

    def public_name(self, path):
        """mindcv's names: `patch_embed_list.i.*`, `block_list.i.j.*` (`mlp.dwconv.dwconv.*`), `norm_list.i.*`."""
        path = re.sub(r"^stages\.(\d+)\.(patch_embed|norm)\.", r"\2_list.\1.", path)
        path = re.sub(r"^stages\.(\d+)\.blocks\.", r"block_list.\1.", path)
        return re.sub(r"\.mlp\.dwconv\.(weight|bias)$", r".mlp.dwconv.dwconv.\1", path)

    def forward_stem(self, x):
        """Images (B, C, H, W), as the first patch embedding reads them, and no tokens."""
        return x, None

    def forward_norm(self, x, tokens):
        """Normalised last-stage tokens (B, H*W/1024, C) (each stage normalises its own output)."""
        batch, height, width, dim = x.shape
        return x.reshape(batch, height * width, dim)

    def forward_head(self, x, pre_logits=False):
        x = x.mean(axis=1)
        return x if pre_logits else self.head(x)


def _rename_key(key):
    """timm (`stages.1.downsample.*`, `stages.1.blocks.0.*`, `stages.1.norm.*`, `patch_embed.*`) and the authors'
    code (`patch_embed2.*`, `block2.0.*`, `norm2.*`) onto mindcv's `patch_embed_list.1.*`, `block_list.1.0.*`,
    `norm_list.1.*`; timm's `mlp.dwconv.*` is mindcv's `mlp.dwconv.dwconv.*`."""
    key = re.sub(r"^patch_embed\.", "patch_embed_list.0.", key)
    key = re.sub(r"^stages\.(\d+)\.downsample\.", r"patch_embed_list.\1.", key)
    key = re.sub(r"^stages\.(\d+)\.blocks\.", r"block_list.\1.", key)
    key = re.sub(r"^stages\.(\d+)\.norm\.", r"norm_list.\1.", key)
    key = re.sub(r"^(patch_embed|block|norm)(\d)\.",
                 lambda m: f"{'patch_embed_list' if m.group(1) == 'patch_embed' else m.group(1) + '_list'}."
                           f"{int(m.group(2)) - 1}.", key)
    return re.sub(r"\.mlp\.dwconv\.(weight|bias)$", r".mlp.dwconv.dwconv.\1", key)


def checkpoint_filter_fn(state_dict, model):
    """Map timm's or the authors' PyTorch keys onto mindcv's names (ours); mindcv keys pass unchanged."""
    return {_rename_key(key): value for key, value in state_dict.items()}


def _create_pvt_v2(variant, pretrained=False, **kwargs):
    return build_model_with_cfg(PyramidVisionTransformerV2, variant, pretrained, checkpoint_filter_fn, **kwargs)


_MINDCV_URL = "https://download.mindspore.cn/toolkits/mindcv/pvt_v2/"


def _pvt_v2_cfg(url="", sha256_prefix=""):
    return pretrained_cfg(url=url, sha256_prefix=sha256_prefix, crop_pct=0.9, first_conv="stages.0.patch_embed.proj")


pretrained_cfgs = {
    "pvt_v2_b0": _pvt_v2_cfg(_MINDCV_URL + "pvt_v2_b0-1c4f6683.ckpt", "1c4f6683"),
    "pvt_v2_b1": _pvt_v2_cfg(_MINDCV_URL + "pvt_v2_b1-3ceb171a.ckpt", "3ceb171a"),
    "pvt_v2_b2": _pvt_v2_cfg(_MINDCV_URL + "pvt_v2_b2-0565d18e.ckpt", "0565d18e"),
    "pvt_v2_b3": _pvt_v2_cfg(_MINDCV_URL + "pvt_v2_b3-feaae3fc.ckpt", "feaae3fc"),
    "pvt_v2_b4": _pvt_v2_cfg(_MINDCV_URL + "pvt_v2_b4-1cf4bc03.ckpt", "1cf4bc03"),
    "pvt_v2_b5": _pvt_v2_cfg(),
    "pvt_v2_b2_li": _pvt_v2_cfg(),
}


@register_model
def pvt_v2_b0(pretrained=False, **kwargs):
    return _create_pvt_v2("pvt_v2_b0", pretrained, depths=(2, 2, 2, 2), embed_dims=(32, 64, 160, 256), **kwargs)


@register_model
def pvt_v2_b1(pretrained=False, **kwargs):
    return _create_pvt_v2("pvt_v2_b1", pretrained, depths=(2, 2, 2, 2), **kwargs)


@register_model
def pvt_v2_b2(pretrained=False, **kwargs):
    return _create_pvt_v2("pvt_v2_b2", pretrained, depths=(3, 4, 6, 3), **kwargs)


@register_model
def pvt_v2_b3(pretrained=False, **kwargs):
    return _create_pvt_v2("pvt_v2_b3", pretrained, depths=(3, 4, 18, 3), **kwargs)


@register_model
def pvt_v2_b4(pretrained=False, **kwargs):
    return _create_pvt_v2("pvt_v2_b4", pretrained, depths=(3, 8, 27, 3), **kwargs)


@register_model
def pvt_v2_b5(pretrained=False, **kwargs):
    return _create_pvt_v2("pvt_v2_b5", pretrained, depths=(3, 6, 40, 3), mlp_ratios=(4, 4, 4, 4), **kwargs)


@register_model
def pvt_v2_b2_li(pretrained=False, **kwargs):
    return _create_pvt_v2("pvt_v2_b2_li", pretrained, depths=(3, 4, 6, 3), linear=True, **kwargs)
