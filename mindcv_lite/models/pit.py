"""PiT: Pooling-based Vision Transformer (Heo et al., arXiv 2103.16302).

Numerics follow the authors' code and timm (exact GELU, LayerNorm eps 1e-6). The model is timm-shaped
(`stages.N.pool`, `stages.N.blocks.M`); its parameter names are the attribute paths of mindcv's PiT
(`transformers.1.blocks.0...`, `pools.0.conv...`); `checkpoint_filter_fn` maps mindcv's `Parameter.name` keys
and timm's keys onto them.
"""
import re

import numpy as np
from mindspore import Parameter, nn, ops

from .layers import Attention, Block, DepthwiseConv2d, LayerNorm, Linear, Mlp, PatchConv2d, resample_pos_embed_grid, \
    trunc_normal
from .base import VisionModel
from .helpers import build_model_with_cfg
from .registry import pretrained_cfg, register_model

__all__ = ["PoolingTransformer"]


class ConvEmbedding(nn.Cell):
    """Overlapping patch embedding (kernel `patch_size`, stride `stride`) of images (B, C, H, W) to a channels-last
    map."""

    def __init__(self, in_chans, embed_dim, patch_size, stride, padding):
        super().__init__()
        self.conv = PatchConv2d(in_chans, embed_dim, patch_size, stride, padding, channels_first=True)

    def construct(self, x):
        return self.conv(x)


class Pooling(nn.Cell):
    """Halve the token map with a depthwise stride-2 convolution; map class tokens with a linear layer."""

    def __init__(self, in_dim, out_dim, stride=2):
        super().__init__()
        self.conv = DepthwiseConv2d(in_dim, out_dim // in_dim, kernel_size=stride + 1, stride=stride,
                                    padding=stride // 2)
        self.fc = Linear(in_dim, out_dim)

    def construct(self, x, cls_tokens):
        return self.conv(x), self.fc(cls_tokens)


class PitStage(nn.Cell):
    """One PiT stage: pooling from the previous stage (all but the first), then class tokens and the flattened
    map go through `depth` blocks together."""

    def __init__(self, in_dim, dim, depth, num_heads, mlp_ratio, downsample, proj_drop, attn_drop, drop_path,
                 norm_eps):
        super().__init__()
        self.pool = Pooling(in_dim, dim) if downsample else None
        self.blocks = nn.CellList([
            Block(dim, Attention(dim, num_heads, qkv_bias=True, attn_drop=attn_drop, proj_drop=proj_drop),
                  Mlp(dim, int(dim * mlp_ratio), drop=proj_drop), drop_path=drop_path[i], norm_eps=norm_eps)
            for i in range(depth)
        ])

    def construct(self, x, cls_tokens):
        if self.pool is not None:
            x, cls_tokens = self.pool(x, cls_tokens)
        batch, height, width, dim = x.shape
        num_tokens = cls_tokens.shape[1]
        x = ops.concat((cls_tokens, x.reshape(batch, height * width, dim)), axis=1)
        for block in self.blocks:
            x = block(x, height, width)
        return x[:, num_tokens:].reshape(batch, height, width, dim), x[:, :num_tokens]


class PoolingTransformer(VisionModel):
    """PiT classifier. With `distilled`, a second (distillation) token and head; the output is the mean of the
    two heads, except in training after `set_distilled_training()` (then the pair, for a distillation loss)."""

    classifier_names = ("head", "head_dist")

    def __init__(self, img_size=224, patch_size=16, stride=8, base_dims=(48, 48, 48), depth=(2, 6, 4),
                 heads=(2, 4, 8), mlp_ratio=4.0, num_classes=1000, in_chans=3, distilled=False, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, norm_eps=1e-6):
        if not (len(base_dims) == len(depth) == len(heads)):
            raise ValueError(f"base_dims, depth and heads need one entry per stage, got {base_dims}, {depth}, {heads}")
        dims = [b * h for b, h in zip(base_dims, heads)]
        super().__init__(num_classes, dims[-1])
        padding = 0
        self.img_size = img_size
        self.grid_size = (img_size + 2 * padding - patch_size) // stride + 1
        if self.grid_size < 1:
            raise ValueError(f"img_size {img_size} is smaller than the patch size {patch_size}")
        self.num_stages = len(depth)
        self.num_tokens = 2 if distilled else 1
        self.pos_embed = Parameter(trunc_normal((1, dims[0], self.grid_size, self.grid_size)), name="pos_embed")
        self.cls_token = Parameter(trunc_normal((1, self.num_tokens, dims[0])), name="cls_token")
        self.patch_embed = ConvEmbedding(in_chans, dims[0], patch_size, stride, padding)
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = np.linspace(0, drop_path_rate, sum(depth)).tolist()
        offsets = np.cumsum((0,) + tuple(depth)).tolist()
        self.stages = nn.CellList([
            PitStage(dims[max(i - 1, 0)], dims[i], depth[i], heads[i], mlp_ratio, downsample=i > 0,
                     proj_drop=drop_rate, attn_drop=attn_drop_rate, drop_path=rates[offsets[i]:offsets[i + 1]],
                     norm_eps=norm_eps)
            for i in range(self.num_stages)
        ])
        self.norm = LayerNorm(dims[-1], eps=norm_eps)
        self.head_drop = nn.Dropout(p=drop_rate)
        self.head = self.create_head(num_classes)
        self.head_dist = self.create_head(num_classes) if distilled else None
        self.distilled_training = False
        self.feature_info = [dict(num_chs=dims[i], reduction=stride * 2 ** i, module=f"stages.{i}")
                             for i in range(self.num_stages)]
        self.init_model()

    def public_name(self, path):
        """mindcv's attribute paths: stage i's blocks are `transformers.i.blocks.*`, its pooling `pools.{i-1}.*`."""
        path = re.sub(r"^stages\.(\d+)\.pool\.", lambda m: f"pools.{int(m.group(1)) - 1}.", path)
        return re.sub(r"^stages\.(\d+)\.blocks\.", r"transformers.\1.blocks.", path)

    def to_mindcv_key(self, name):
        return to_mindcv_key(name)

    def set_distilled_training(self, enable=True):
        """timm semantics: in training mode, return (class logits, distillation logits) instead of their mean."""
        if self.head_dist is None:
            raise ValueError("set_distilled_training needs a distilled PiT (pit_*_distilled)")
        self.distilled_training = enable

    def forward_stem(self, x):
        """Images (B, C, H, W) -> position-embedded patch map (B, H', W', C) and the class tokens."""
        if x.shape[2] != self.img_size or x.shape[3] != self.img_size:
            raise ValueError(f"PiT built for {self.img_size}x{self.img_size} inputs got {x.shape[2]}x{x.shape[3]}: "
                             f"create the model with img_size={x.shape[2]} (the checkpoint's position embedding "
                             f"is resampled on load) or resize the input")
        x = self.patch_embed(x)
        x = self.pos_drop(x + self.pos_embed.transpose(0, 2, 3, 1))
        return x, ops.broadcast_to(self.cls_token, (x.shape[0], -1, -1))

    def forward_norm(self, x, cls_tokens):
        """Normalised class (and distillation) tokens (B, num_tokens, C)."""
        return self.norm(cls_tokens)

    def forward_head(self, x, pre_logits=False):
        """Class-token logits; distilled models average the class head and the distillation-token head."""
        cls = self.head_drop(x[:, 0])
        if pre_logits:
            return cls
        if self.head_dist is None:
            return self.head(cls)
        logits, dist_logits = self.head(cls), self.head_dist(self.head_drop(x[:, 1]))
        if self.distilled_training and self.training:
            return logits, dist_logits
        return (logits + dist_logits) / 2


def _rename_mindcv_key(key):
    """mindcv's PiT appends stages to an empty CellList, so `Parameter.name` loses the attribute path:
    `0.blocks.1.blocks.0.*` is `transformers.1.blocks.0.*`, `0.blocks.1.*` is `transformers.0.blocks.1.*`,
    `0.conv.*` is `pools.0.conv.*`."""
    key = re.sub(r"^0\.blocks\.(\d+)\.blocks\.", r"transformers.\1.blocks.", key)
    key = re.sub(r"^0\.blocks\.(\d+)\.", r"transformers.0.blocks.\1.", key)
    return re.sub(r"^(\d+)\.(conv|fc)\.", r"pools.\1.\2.", key)


def to_mindcv_key(key):
    """Inverse of `_rename_mindcv_key`: the `Parameter.name` mindcv's PiT gives our weight `key`, so that
    checkpoints written by train.py load into mindcv too."""
    key = re.sub(r"^transformers\.0\.blocks\.", "0.blocks.", key)
    key = re.sub(r"^transformers\.(\d+)\.blocks\.", r"0.blocks.\1.blocks.", key)
    return re.sub(r"^pools\.(\d+)\.", r"\1.", key)


def _rename_timm_key(key):
    """timm keeps each pooling inside the stage it feeds: `transformers.1.pool.*` is `pools.0.*`."""
    match = re.match(r"^transformers\.(\d+)\.pool\.(.*)", key)
    return f"pools.{int(match.group(1)) - 1}.{match.group(2)}" if match else key


def checkpoint_filter_fn(state_dict, model):
    """Map mindcv (`Parameter.name`) or timm/PyTorch keys to ours; split timm's fused qkv; resample the
    position embedding (bicubic, as timm) when the model was built for another image size."""
    out = {}
    for key, value in state_dict.items():
        key = _rename_timm_key(_rename_mindcv_key(key))
        if key.endswith(("attn.qkv.weight", "attn.qkv.bias")):
            prefix, suffix = key.rsplit(".qkv.", 1)
            for name, part in zip("qkv", np.split(value, 3, axis=0)):
                out[f"{prefix}.{name}.{suffix}"] = part
            continue
        out[key] = value
    pos_embed = out.get("pos_embed")
    target = tuple(model.pos_embed.shape)
    if pos_embed is not None and pos_embed.ndim == 4 and tuple(pos_embed.shape) != target \
            and pos_embed.shape[:2] == target[:2]:
        grid = resample_pos_embed_grid(pos_embed[0].transpose(1, 2, 0), target[2:], "bicubic")
        out["pos_embed"] = grid.transpose(2, 0, 1)[None]
    return out


def _create_pit(variant, pretrained=False, **kwargs):
    return build_model_with_cfg(PoolingTransformer, variant, pretrained, checkpoint_filter_fn, **kwargs)


_MINDCV_URL = "https://download.mindspore.cn/toolkits/mindcv/pit/"


def _pit_cfg(url="", sha256_prefix="", **kwargs):
    return pretrained_cfg(url=url, sha256_prefix=sha256_prefix, crop_pct=0.9, first_conv="patch_embed.conv", **kwargs)


pretrained_cfgs = {
    # 73.26 top-1 (mindcv, Ascend 910*); the older pit_ti-e647a593.ckpt scored 72.96.
    "pit_ti": _pit_cfg("https://download-mindspore.osinfra.cn/toolkits/mindcv/pit/pit_ti-33466a0d-910v2.ckpt",
                       "33466a0d"),
    "pit_xs": _pit_cfg(_MINDCV_URL + "pit_xs-fea0d37e.ckpt", "fea0d37e"),
    "pit_s": _pit_cfg(_MINDCV_URL + "pit_s-3c1ba36f.ckpt", "3c1ba36f"),
    "pit_b": _pit_cfg(_MINDCV_URL + "pit_b-2411c9b6.ckpt", "2411c9b6"),
}
for _name in ("pit_ti", "pit_xs", "pit_s", "pit_b"):
    pretrained_cfgs[_name + "_distilled"] = _pit_cfg(classifier=("head", "head_dist"))


@register_model
def pit_ti(pretrained=False, **kwargs):
    return _create_pit("pit_ti", pretrained, patch_size=16, stride=8, base_dims=(32, 32, 32), depth=(2, 6, 4),
                       heads=(2, 4, 8), **kwargs)


@register_model
def pit_xs(pretrained=False, **kwargs):
    return _create_pit("pit_xs", pretrained, patch_size=16, stride=8, base_dims=(48, 48, 48), depth=(2, 6, 4),
                       heads=(2, 4, 8), **kwargs)


@register_model
def pit_s(pretrained=False, **kwargs):
    return _create_pit("pit_s", pretrained, patch_size=16, stride=8, base_dims=(48, 48, 48), depth=(2, 6, 4),
                       heads=(3, 6, 12), **kwargs)


@register_model
def pit_b(pretrained=False, **kwargs):
    return _create_pit("pit_b", pretrained, patch_size=14, stride=7, base_dims=(64, 64, 64), depth=(3, 6, 4),
                       heads=(4, 8, 16), **kwargs)


@register_model
def pit_ti_distilled(pretrained=False, **kwargs):
    return _create_pit("pit_ti_distilled", pretrained, patch_size=16, stride=8, base_dims=(32, 32, 32),
                       depth=(2, 6, 4), heads=(2, 4, 8), distilled=True, **kwargs)


@register_model
def pit_xs_distilled(pretrained=False, **kwargs):
    return _create_pit("pit_xs_distilled", pretrained, patch_size=16, stride=8, base_dims=(48, 48, 48),
                       depth=(2, 6, 4), heads=(2, 4, 8), distilled=True, **kwargs)


@register_model
def pit_s_distilled(pretrained=False, **kwargs):
    return _create_pit("pit_s_distilled", pretrained, patch_size=16, stride=8, base_dims=(48, 48, 48),
                       depth=(2, 6, 4), heads=(3, 6, 12), distilled=True, **kwargs)


@register_model
def pit_b_distilled(pretrained=False, **kwargs):
    return _create_pit("pit_b_distilled", pretrained, patch_size=14, stride=7, base_dims=(64, 64, 64),
                       depth=(3, 6, 4), heads=(4, 8, 16), distilled=True, **kwargs)
