"""PiT: Pooling-based Vision Transformer (Heo et al., arXiv 2103.16302).

Numerics follow the authors' code and timm (exact GELU, LayerNorm eps 1e-6). Parameter names are the
attribute paths of mindcv's PiT (`transformers.1.blocks.0...`, `pools.0.conv...`); `checkpoint_filter_fn`
maps mindcv's `Parameter.name` keys and timm's keys onto them.
"""
import re

import numpy as np
from mindspore import Parameter, nn, ops

from .layers import Block, DepthwiseConv2d, LayerNorm, PatchConv2d, init_weights, resample_pos_embed_grid, trunc_normal
from .base import VisionModel
from .helpers import build_model_with_cfg
from .registry import pretrained_cfg, register_model

__all__ = ["PoolingTransformer"]


class ConvEmbedding(nn.Cell):
    """Overlapping patch embedding (kernel `patch_size`, stride `stride`) to a channels-last map."""

    def __init__(self, in_chans, embed_dim, patch_size, stride, padding):
        super().__init__()
        self.conv = PatchConv2d(in_chans, embed_dim, patch_size, stride, padding)

    def construct(self, x):
        return self.conv(x.transpose(0, 2, 3, 1))


class Pooling(nn.Cell):
    """Halve the token map with a depthwise stride-2 convolution; map class tokens with a linear layer."""

    def __init__(self, in_dim, out_dim, stride=2):
        super().__init__()
        self.conv = DepthwiseConv2d(in_dim, out_dim // in_dim, kernel_size=stride + 1, stride=stride,
                                    padding=stride // 2)
        self.fc = nn.Dense(in_dim, out_dim)

    def construct(self, x, cls_tokens):
        return self.conv(x), self.fc(cls_tokens)


class Transformer(nn.Cell):
    """One PiT stage: class tokens and the flattened map go through `depth` blocks together."""

    def __init__(self, dim, depth, num_heads, mlp_ratio, proj_drop=0.0, attn_drop=0.0, drop_path=(), norm_eps=1e-6):
        super().__init__()
        self.blocks = nn.CellList([
            Block(dim, num_heads, mlp_ratio, qkv_bias=True, proj_drop=proj_drop, attn_drop=attn_drop,
                  drop_path=drop_path[i], norm_eps=norm_eps)
            for i in range(depth)
        ])

    def construct(self, x, cls_tokens):
        batch, height, width, dim = x.shape
        num_tokens = cls_tokens.shape[1]
        x = ops.concat((cls_tokens, x.reshape(batch, height * width, dim)), axis=1)
        for block in self.blocks:
            x = block(x)
        return x[:, num_tokens:].reshape(batch, height, width, dim), x[:, :num_tokens]


class PoolingTransformer(VisionModel):
    """PiT classifier. With `distilled`, a second (distillation) token and head; the output is the mean of the
    two heads, except in training after `set_distilled_training()` (then the pair, for a distillation loss)."""

    def __init__(self, img_size=224, patch_size=16, stride=8, base_dims=(48, 48, 48), depth=(2, 6, 4),
                 heads=(2, 4, 8), mlp_ratio=4.0, num_classes=1000, in_chans=3, distilled=False, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, norm_eps=1e-6):
        super().__init__()
        if not (len(base_dims) == len(depth) == len(heads)):
            raise ValueError(f"base_dims, depth and heads need one entry per stage, got {base_dims}, {depth}, {heads}")
        padding = 0
        self.img_size = img_size
        self.grid_size = (img_size + 2 * padding - patch_size) // stride + 1
        if self.grid_size < 1:
            raise ValueError(f"img_size {img_size} is smaller than the patch size {patch_size}")
        dims = [b * h for b, h in zip(base_dims, heads)]
        self.num_stages = len(depth)
        self.num_tokens = 2 if distilled else 1
        self.num_classes = num_classes
        self.num_features = dims[-1]
        self.pos_embed = Parameter(trunc_normal((1, dims[0], self.grid_size, self.grid_size)), name="pos_embed")
        self.cls_token = Parameter(trunc_normal((1, self.num_tokens, dims[0])), name="cls_token")
        self.patch_embed = ConvEmbedding(in_chans, dims[0], patch_size, stride, padding)
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = np.linspace(0, drop_path_rate, sum(depth)).tolist()
        offsets = np.cumsum((0,) + tuple(depth)).tolist()
        self.transformers = nn.CellList([
            Transformer(dims[i], depth[i], heads[i], mlp_ratio, proj_drop=drop_rate, attn_drop=attn_drop_rate,
                        drop_path=rates[offsets[i]:offsets[i + 1]], norm_eps=norm_eps)
            for i in range(self.num_stages)
        ])
        self.pools = nn.CellList([Pooling(dims[i], dims[i + 1]) for i in range(self.num_stages - 1)])
        self.norm = LayerNorm(dims[-1], eps=norm_eps)
        self.head_drop = nn.Dropout(p=drop_rate)
        self.head = self._make_head(num_classes)
        self.head_dist = self._make_head(num_classes) if distilled else None
        self.distilled_training = False
        reduction = stride
        self.feature_info = []
        for i in range(self.num_stages):
            self.feature_info.append(dict(num_chs=dims[i], reduction=reduction, module=f"transformers.{i}"))
            reduction *= 2
        init_weights(self)

    def _make_head(self, num_classes):
        return nn.Dense(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}

    def group_matcher(self, coarse=False):
        # pools.i downsamples into stage i + 1: it joins that stage (its first block when fine).
        pools = [(rf"^pools\.{i}\.", (i + 1,) if coarse else (i + 1, 0)) for i in range(self.num_stages - 1)]
        stage = r"^transformers\.(\d+)\." if coarse else r"^transformers\.(\d+)\.blocks\.(\d+)\."
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed\.", blocks=[(stage, None)] + pools)

    def blocks(self):
        return [block for stage in self.transformers for block in stage.blocks]

    def set_distilled_training(self, enable=True):
        """timm semantics: in training mode, return (class logits, distillation logits) instead of their mean."""
        if self.head_dist is None:
            raise ValueError("set_distilled_training needs a distilled PiT (pit_*_distilled)")
        self.distilled_training = enable

    def get_classifier(self):
        return (self.head, self.head_dist) if self.head_dist is not None else self.head

    def reset_classifier(self, num_classes):
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)
        if self.head_dist is not None:
            self.head_dist = self._make_head(num_classes)
        init_weights(self.head)
        if self.head_dist is not None:
            init_weights(self.head_dist)

    def _embed(self, x):
        """Images (B, C, H, W) -> position-embedded patch map (B, H', W', C) and the class tokens."""
        if x.shape[2] != self.img_size or x.shape[3] != self.img_size:
            raise ValueError(f"PiT built for {self.img_size}x{self.img_size} inputs got {x.shape[2]}x{x.shape[3]}: "
                             f"create the model with img_size={x.shape[2]} (the checkpoint's position embedding "
                             f"is resampled on load) or resize the input")
        x = self.patch_embed(x)
        x = self.pos_drop(x + self.pos_embed.transpose(0, 2, 3, 1))
        return x, ops.broadcast_to(self.cls_token, (x.shape[0], -1, -1))

    def forward_intermediates(self, x, indices):
        """Images (B, C, H, W) -> tuple of NCHW maps after the stages in `indices`, in that order."""
        x, cls_tokens = self._embed(x)
        maps = []
        for i in range(max(indices) + 1):
            if i > 0:
                x, cls_tokens = self.pools[i - 1](x, cls_tokens)
            x, cls_tokens = self.transformers[i](x, cls_tokens)
            maps.append(x)
        return tuple([maps[i].transpose(0, 3, 1, 2) for i in indices])

    def forward_features(self, x):
        """Images (B, C, H, W) -> normalised class (and distillation) tokens (B, num_tokens, C)."""
        x, cls_tokens = self._embed(x)
        for i in range(self.num_stages):
            if i > 0:
                x, cls_tokens = self.pools[i - 1](x, cls_tokens)
            x, cls_tokens = self.transformers[i](x, cls_tokens)
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

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


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
    model = build_model_with_cfg(PoolingTransformer, variant, pretrained, checkpoint_filter_fn, **kwargs)
    model.to_mindcv_key = to_mindcv_key
    return model


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
