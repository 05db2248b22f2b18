"""PVT: Pyramid Vision Transformer (Wang et al., arXiv 2102.12122).

Numerics follow the authors' code (whai362/PVT): exact GELU, LayerNorm eps 1e-6 in blocks and the final
norm, 1e-5 in patch embeddings and spatial reduction; position embeddings are resized bilinearly
(half-pixel) for inputs of another size. Parameter names are mindcv's (`Blocks.2.0.attn.sr.weight`);
`checkpoint_filter_fn` also takes the authors' PyTorch keys (`block3.0.attn.sr.weight`).
"""
import re

import numpy as np
from mindspore import Parameter, nn, ops

from .layers import Block, LayerNorm, PatchConv2d, init_weights, resample_pos_embed_grid, resize_pos_embed_bilinear, \
    trunc_normal
from .base import VisionModel
from .helpers import build_model_with_cfg
from .registry import pretrained_cfg, register_model

__all__ = ["PyramidVisionTransformer"]


class PatchEmbed(nn.Cell):
    """Non-overlapping patches (kernel = stride = `patch_size`) of a channels-last map, then LayerNorm (eps 1e-5)."""

    def __init__(self, patch_size, in_chans, embed_dim, norm_eps=1e-5):
        super().__init__()
        self.proj = PatchConv2d(in_chans, embed_dim, patch_size, patch_size)
        self.norm = LayerNorm(embed_dim, eps=norm_eps)

    def construct(self, x):
        """(B, H, W, C_in) -> tokens (B, H/p * W/p, C) and the new map height and width."""
        x = self.proj(x)
        batch, height, width, dim = x.shape
        return self.norm(x.reshape(batch, height * width, dim)), height, width


class PyramidVisionTransformer(VisionModel):
    """Four stages at strides 4, 8, 16, 32 with spatial-reduction attention; a class token in the last stage."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dims=(64, 128, 320, 512),
                 num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4), qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0, depths=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1), norm_eps=1e-6):
        super().__init__()
        if img_size % 32:
            raise ValueError(f"PVT needs img_size divisible by 32 (four stride-2+ stages), got {img_size}")
        self.num_classes = num_classes
        self.num_features = embed_dims[-1]
        self.grid_sizes = []
        grid = img_size // patch_size
        for i in range(4):
            self.grid_sizes.append(grid)
            grid //= 2
        self.pos_embed1 = Parameter(trunc_normal((1, self.grid_sizes[0] ** 2, embed_dims[0])), name="pos_embed1")
        self.pos_embed2 = Parameter(trunc_normal((1, self.grid_sizes[1] ** 2, embed_dims[1])), name="pos_embed2")
        self.pos_embed3 = Parameter(trunc_normal((1, self.grid_sizes[2] ** 2, embed_dims[2])), name="pos_embed3")
        self.pos_embed4 = Parameter(trunc_normal((1, self.grid_sizes[3] ** 2 + 1, embed_dims[3])), name="pos_embed4")
        self.cls_token = Parameter(trunc_normal((1, 1, embed_dims[3])), name="cls_token")
        self.patch_embed1 = PatchEmbed(patch_size, in_chans, embed_dims[0])
        self.patch_embed2 = PatchEmbed(2, embed_dims[0], embed_dims[1])
        self.patch_embed3 = PatchEmbed(2, embed_dims[1], embed_dims[2])
        self.patch_embed4 = PatchEmbed(2, embed_dims[2], embed_dims[3])
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        offsets = np.cumsum((0,) + tuple(depths)).tolist()
        self.Blocks = nn.CellList([  # noqa: N815 - mindcv's attribute name, kept so checkpoints match
            nn.CellList([
                Block(embed_dims[i], num_heads[i], mlp_ratios[i], qkv_bias=qkv_bias, proj_drop=drop_rate,
                      attn_drop=attn_drop_rate, drop_path=rates[offsets[i] + j], sr_ratio=sr_ratios[i],
                      fused_kv=True, norm_eps=norm_eps)
                for j in range(depths[i])
            ])
            for i in range(4)
        ])
        self.norm = LayerNorm(embed_dims[3], eps=norm_eps)
        self.head = self._make_head(num_classes)
        self.feature_info = [dict(num_chs=embed_dims[i], reduction=patch_size * 2 ** i, module=f"Blocks.{i}")
                             for i in range(4)]
        init_weights(self)

    def _make_head(self, num_classes):
        return nn.Dense(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def no_weight_decay(self):
        return {"pos_embed1", "pos_embed2", "pos_embed3", "pos_embed4", "cls_token"}

    def group_matcher(self, coarse=False):
        # patch_embed{k+1} / pos_embed{k+1} open stage k: they join it (its first block when fine).
        embeds = [(rf"^(?:patch_embed|pos_embed){k + 1}(?:\.|$)", (k,) if coarse else (k, 0)) for k in range(1, 4)]
        stage = r"^Blocks\.(\d+)\." if coarse else r"^Blocks\.(\d+)\.(\d+)\."
        return dict(stem=r"^cls_token|^pos_embed1$|^patch_embed1\.", blocks=[(stage, None)] + embeds)

    def blocks(self):
        return [block for stage in self.Blocks for block in stage]

    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes):
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)
        init_weights(self.head)

    def _pos_embed(self, pos_embed, stage, height, width):
        """The stage's position embedding, bilinearly resized when the input is not the built size."""
        grid = self.grid_sizes[stage]
        if (height, width) == (grid, grid):
            return pos_embed
        return resize_pos_embed_bilinear(pos_embed, (grid, grid), (height, width))

    def _stage(self, x, stage, patch_embed, pos_embed, blocks):
        x, height, width = patch_embed(x)
        if stage == 3:
            x = ops.concat((ops.broadcast_to(self.cls_token, (x.shape[0], -1, -1)), x), axis=1)
            pos_embed = ops.concat((pos_embed[:, :1], self._pos_embed(pos_embed[:, 1:], stage, height, width)), axis=1)
        else:
            pos_embed = self._pos_embed(pos_embed, stage, height, width)
        x = self.pos_drop(x + pos_embed)
        for block in blocks:
            x = block(x, height, width)
        if stage == 3:
            return x
        return x.reshape(x.shape[0], height, width, x.shape[2])

    @staticmethod
    def _check_input(x):
        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"PVT needs input height and width divisible by 32, got {x.shape[2]}x{x.shape[3]}")

    def forward_intermediates(self, x, indices):
        """Images (B, C, H, W) -> tuple of NCHW maps of the stages in `indices` (0..3), in that order.

        The last stage runs with its class token, as in the classifier; its map leaves the token out.
        """
        self._check_input(x)
        stages = ((self.patch_embed1, self.pos_embed1, self.Blocks[0]), (self.patch_embed2, self.pos_embed2,
                  self.Blocks[1]), (self.patch_embed3, self.pos_embed3, self.Blocks[2]),
                  (self.patch_embed4, self.pos_embed4, self.Blocks[3]))
        x = x.transpose(0, 2, 3, 1)
        maps = []
        for stage in range(max(indices) + 1):
            x = self._stage(x, stage, *stages[stage])
            if stage == 3:
                batch, height, width, _ = maps[2].shape
                x = x[:, 1:].reshape(batch, height // 2, width // 2, x.shape[2])
            maps.append(x)
        return tuple([maps[i].transpose(0, 3, 1, 2) for i in indices])

    def forward_features(self, x):
        """Images (B, C, H, W), H and W divisible by 32 -> normalised tokens (B, 1 + H*W/1024, C), class first."""
        self._check_input(x)
        x = x.transpose(0, 2, 3, 1)
        x = self._stage(x, 0, self.patch_embed1, self.pos_embed1, self.Blocks[0])
        x = self._stage(x, 1, self.patch_embed2, self.pos_embed2, self.Blocks[1])
        x = self._stage(x, 2, self.patch_embed3, self.pos_embed3, self.Blocks[2])
        x = self._stage(x, 3, self.patch_embed4, self.pos_embed4, self.Blocks[3])
        return self.norm(x)

    def forward_head(self, x, pre_logits=False):
        x = x[:, 0]
        return x if pre_logits else self.head(x)

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


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
    return pretrained_cfg(url=url, sha256_prefix=sha256_prefix, crop_pct=0.9, first_conv="patch_embed1.proj")


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
