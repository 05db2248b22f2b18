"""Batch-wise Mixup / CutMix with soft targets (timm's `Mixup` in "batch" mode), in place.

Label smoothing is not applied here: the loss applies it to soft targets too (mindcv_lite.loss), and doing it
in both places would smooth twice.
"""
import numpy as np

__all__ = ["Mixup", "mixup_target", "rand_bbox"]


def mixup_target(labels, num_classes, lam):
    """Soft targets lam * onehot(y) + (1 - lam) * onehot(y reversed); every row sums to 1."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Mixup got label {int(labels.max())} (or {int(labels.min())}) outside [0, num_classes={num_classes}); "
            "pass num_classes=dataset.num_classes() to create_loader."
        )
    onehot = np.zeros((len(labels), num_classes), dtype=np.float32)
    onehot[np.arange(len(labels)), labels] = 1.0
    return (lam * onehot + (1.0 - lam) * onehot[::-1]).astype(np.float32)


def rand_bbox(image_shape, lam, rng):
    """A box covering about 1 - lam of the image, centred uniformly at random and clipped to the image."""
    height, width = image_shape[-2:]
    cut_ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut_ratio), int(width * cut_ratio)
    cy, cx = rng.integers(0, height), rng.integers(0, width)
    top, bottom = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    left, right = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    return int(top), int(bottom), int(left), int(right)


class Mixup:
    """Mix each batch with its reverse: with probability `prob`, CutMix (Beta(cutmix_alpha)) or Mixup
    (Beta(mixup_alpha)), chosen with `switch_prob` when both are on. CutMix's lambda is corrected to the
    clipped box area. Takes (images NCHW float32, int labels, per-sample seeds) and returns (images, (B,
    num_classes) float32 soft targets). The images are mixed in place when writable (the batch is then not
    copied: sample i and sample B-1-i swap their box, or are blended pairwise).

    The batch's random draws come from its per-sample seeds (see seeded.py), so batches mix identically
    whatever the number of parallel workers.
    """

    def __init__(self, mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, num_classes=1000):
        if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha + cutmix_alpha == 0:
            raise ValueError(f"Mixup needs mixup_alpha or cutmix_alpha > 0, got {mixup_alpha}, {cutmix_alpha}")
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.num_classes = num_classes

    def __repr__(self):
        return f"Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.prob})"

    def sample_params(self, rng):
        """(lam, use_cutmix) for one batch; lam == 1 means the batch is left as it is."""
        if rng.random() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = rng.random() < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(rng.beta(alpha, alpha)), use_cutmix

    def __call__(self, images, labels, seeds):
        rng = np.random.default_rng(np.asarray(seeds, dtype=np.uint64).ravel().tolist())
        lam, use_cutmix = self.sample_params(rng)
        if lam < 1.0:
            if not images.flags.writeable:  # MindSpore may hand over a read-only buffer
                images = images.copy()
            half = len(images) // 2
            head, tail = images[:half], images[::-1][:half]  # pairs (i, B-1-i); an odd middle mixes with itself
            if use_cutmix:
                top, bottom, left, right = rand_bbox(images.shape, lam, rng)
                box = (slice(None), slice(None), slice(top, bottom), slice(left, right))
                head_box = head[box].copy()
                head[box] = tail[box]
                tail[box] = head_box
                lam = 1.0 - (bottom - top) * (right - left) / float(images.shape[-2] * images.shape[-1])
            else:
                original_head = head.copy()
                head *= np.float32(lam)
                head += np.float32(1.0 - lam) * tail
                tail *= np.float32(lam)
                original_head *= np.float32(1.0 - lam)
                tail += original_head
        return images, mixup_target(labels, self.num_classes, lam)
