"""PVT: Pyramid Vision Transformer (Wang et al., arXiv 2102.12122).

Numerics follow the authors' code (whai362/PVT): exact GELU, LayerNorm eps 1e-6 in blocks and the final
norm, 1e-5 in patch embeddings and spatial reduction; position embeddings are resized bilinearly
(half-pixel) for inputs of another size. The model is a loop over `stages` (patch embedding, position
embedding, blocks); parameter names are mindcv's (`Blocks.2.0.attn.sr.weight`, `pos_embed3`);
`checkpoint_filter_fn` also takes the authors' PyTorch keys (`block3.0.attn.sr.weight`).
"""
import re

import numpy as np
from mindspore import Parameter, nn, ops

from .layers import Block, LayerNorm, Mlp, PatchConv2d, SpatialReductionAttention, resample_pos_embed_grid, \
    resize_pos_embed_bilinear, trunc_normal
from .base import VisionModel
from .helpers import build_model_with_cfg
from .registry import pretrained_cfg, register_model

__all__ = ["PyramidVisionTransformer"]


class PatchEmbed(nn.Cell):
    """Non-overlapping patches (kernel = stride = `patch_size`) of a channels-last map (`channels_first`: of the
    images), then LayerNorm (eps 1e-5)."""

    def __init__(self, patch_size, in_chans, embed_dim, norm_eps=1e-5, channels_first=False):
        super().__init__()
        self.proj = PatchConv2d(in_chans, embed_dim, patch_size, patch_size, channels_first=channels_first)
        self.norm = LayerNorm(embed_dim, eps=norm_eps)

    def construct(self, x):
        """(B, H, W, C_in) (or images (B, C_in, H, W)) -> tokens (B, H/p * W/p, C) and the new map height and width."""
        x = self.proj(x)
        batch, height, width, dim = x.shape
        return self.norm(x.reshape(batch, height * width, dim)), height, width


class PvtStage(nn.Cell):
    """One PVT stage: patch embedding, position embedding (resized bilinearly, half-pixel, when the input is not
    the built size), spatial-reduction blocks. With `class_token` (the last stage), the class tokens join the
    map's tokens for this stage's blocks and its own position-embedding slot."""

    def __init__(self, in_dim, dim, patch_size, grid_size, depth, num_heads, mlp_ratio, sr_ratio, qkv_bias,
                 class_token, drop_rate, attn_drop_rate, drop_path, norm_eps, channels_first=False):
        super().__init__()
        self.grid_size = grid_size
        self.class_token = class_token
        self.num_prefix = 1 if class_token else 0
        self.patch_embed = PatchEmbed(patch_size, in_dim, dim, channels_first=channels_first)
        self.pos_embed = Parameter(trunc_normal((1, grid_size ** 2 + self.num_prefix, dim)), name="pos_embed")
        self.pos_drop = nn.Dropout(p=drop_rate)
        self.blocks = nn.CellList([
            Block(dim, SpatialReductionAttention(dim, num_heads, sr_ratio, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                                                 proj_drop=drop_rate),
                  Mlp(dim, int(dim * mlp_ratio), drop=drop_rate), drop_path=drop_path[j], norm_eps=norm_eps)
            for j in range(depth)
        ])

    def _grid_pos_embed(self, pos_embed, height, width):
        if (height, width) == (self.grid_size, self.grid_size):
            return pos_embed
        return resize_pos_embed_bilinear(pos_embed, (self.grid_size, self.grid_size), (height, width))

    def construct(self, x, cls_tokens):
        x, height, width = self.patch_embed(x)
        if self.class_token:
            x = ops.concat((cls_tokens, x), axis=1)
            pos_embed = ops.concat((self.pos_embed[:, :1], self._grid_pos_embed(self.pos_embed[:, 1:], height, width)),
                                   axis=1)
        else:
            pos_embed = self._grid_pos_embed(self.pos_embed, height, width)
        x = self.pos_drop(x + pos_embed)
        for block in self.blocks:
            x = block(x, height, width)
        if self.class_token:
            cls_tokens, x = x[:, :1], x[:, 1:]
        return x.reshape(x.shape[0], height, width, x.shape[2]), cls_tokens


class PyramidVisionTransformer(VisionModel):
    """Four stages at strides 4, 8, 16, 32 with spatial-reduction attention; a class token in the last stage."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dims=(64, 128, 320, 512),
                 num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4), qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0, depths=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1), norm_eps=1e-6):
        super().__init__(num_classes, embed_dims[-1])
        if img_size % 32:
            raise ValueError(f"PVT needs img_size divisible by 32 (four stride-2+ stages), got {img_size}")
        self.grid_sizes = [img_size // patch_size // 2 ** i for i in range(4)]
        self.cls_token = Parameter(trunc_normal((1, 1, embed_dims[3])), name="cls_token")
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        offsets = np.cumsum((0,) + tuple(depths)).tolist()
        in_dims = (in_chans,) + tuple(embed_dims[:3])
        self.stages = nn.CellList([
            PvtStage(in_dims[i], embed_dims[i], patch_size if i == 0 else 2, self.grid_sizes[i], depths[i],
                     num_heads[i], mlp_ratios[i], sr_ratios[i], qkv_bias, class_token=i == 3, drop_rate=drop_rate,
                     attn_drop_rate=attn_drop_rate, drop_path=rates[offsets[i]:offsets[i + 1]], norm_eps=norm_eps,
                     channels_first=i == 0)
            for i in range(4)
        ])
        self.norm = LayerNorm(embed_dims[3], eps=norm_eps)
        self.head = self.create_head(num_classes)
        self.feature_info = [dict(num_chs=embed_dims[i], reduction=patch_size * 2 ** i, module=f"stages.{i}")
                             for i in range(4)]
        self.init_model()

    def public_name(self, path):
        """mindcv's names: `patch_embed{i+1}.*`, `pos_embed{i+1}`, `Blocks.i.*`."""
        path = re.sub(r"^stages\.(\d+)\.(patch_embed|pos_embed)", lambda m: f"{m.group(2)}{int(m.group(1)) + 1}", path)
        return re.sub(r"^stages\.(\d+)\.blocks\.", r"Blocks.\1.", path)

    # mindcv's attribute names of the position embeddings (tests and user code read them).
    pos_embed1 = property(lambda self: self.stages[0].pos_embed)
    pos_embed2 = property(lambda self: self.stages[1].pos_embed)
    pos_embed3 = property(lambda self: self.stages[2].pos_embed)
    pos_embed4 = property(lambda self: self.stages[3].pos_embed)

    def forward_stem(self, x):
        """Images (B, C, H, W), H and W divisible by 32 -> the images (the first patch embedding reads them
        channels-first) and the class token."""
        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"PVT needs input height and width divisible by 32, got {x.shape[2]}x{x.shape[3]}")
        return x, ops.broadcast_to(self.cls_token, (x.shape[0], -1, -1))

    def forward_norm(self, x, cls_tokens):
        """Normalised tokens (B, 1 + H*W/1024, C), class first."""
        batch, height, width, dim = x.shape
        return self.norm(ops.concat((cls_tokens, x.reshape(batch, height * width, dim)), axis=1))

    def forward_head(self, x, pre_logits=False):
        x = x[:, 0]
        return x if pre_logits else self.head(x)


def checkpoint_filter_fn(state_dict, model):
    """Map the authors' PyTorch keys (`block1.0.*`) to ours (`Blocks.0.0.*`) and resample position embeddings
    (bilinear, half-pixel, as PVT resizes them at run time) when the model was built for another image size."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^block(\d+)\.", lambda m: f"Blocks.{int(m.group(1)) - 1}.", key)
        out[key] = value
    for stage, grid in enumerate(model.grid_sizes):
        key = f"pos_embed{stage + 1}"
        pos_embed = out.get(key)
        num_extra = 1 if stage == 3 else 0
        target_len = grid * grid + num_extra
        if pos_embed is None or pos_embed.ndim != 3 or pos_embed.shape[1] == target_len:
            continue
        src_grid = int(round((pos_embed.shape[1] - num_extra) ** 0.5))
        if src_grid * src_grid != pos_embed.shape[1] - num_extra:
            continue  # not a square grid: left for the strict shape check to report
        tokens = pos_embed[0, num_extra:].reshape(src_grid, src_grid, -1)
        tokens = resample_pos_embed_grid(tokens, (grid, grid), "bilinear").reshape(grid * grid, -1)
        out[key] = np.concatenate([pos_embed[0, :num_extra], tokens], axis=0)[None]
    return out


def _create_pvt(variant, pretrained=False, **kwargs):
    return build_model_with_cfg(PyramidVisionTransformer, variant, pretrained, checkpoint_filter_fn, **kwargs)


_MINDCV_URL = "https://download.mindspore.cn/toolkits/mindcv/pvt/"


def _pvt_cfg(url, sha256_prefix):
    return pretrained_cfg(url=url, sha256_prefix=sha256_prefix, crop_pct=0.9, first_conv="stages.0.patch_embed.proj")


pretrained_cfgs = {
    "pvt_tiny": _pvt_cfg(_MINDCV_URL + "pvt_tiny-6abb953d.ckpt", "6abb953d"),
    "pvt_small": _pvt_cfg(_MINDCV_URL + "pvt_small-213c2ed1.ckpt", "213c2ed1"),
    "pvt_medium": _pvt_cfg(_MINDCV_URL + "pvt_medium-469e6802.ckpt", "469e6802"),
    "pvt_large": _pvt_cfg(_MINDCV_URL + "pvt_large-bb6895d7.ckpt", "bb6895d7"),
}


@register_model
def pvt_tiny(pretrained=False, **kwargs):
    return _create_pvt("pvt_tiny", pretrained, depths=(2, 2, 2, 2), **kwargs)


@register_model
def pvt_small(pretrained=False, **kwargs):
    return _create_pvt("pvt_small", pretrained, depths=(3, 4, 6, 3), **kwargs)


@register_model
def pvt_medium(pretrained=False, **kwargs):
    return _create_pvt("pvt_medium", pretrained, depths=(3, 4, 18, 3), **kwargs)


@register_model
def pvt_large(pretrained=False, **kwargs):
    return _create_pvt("pvt_large", pretrained, depths=(3, 8, 27, 3), **kwargs)
