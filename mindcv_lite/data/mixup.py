"""Batch-wise Mixup / CutMix with soft targets (timm's `Mixup` in "batch" mode)."""
import numpy as np

__all__ = ["Mixup", "mixup_target"]


def mixup_target(labels, num_classes, lam, smoothing=0.0):
    """Soft targets lam * onehot(y) + (1 - lam) * onehot(y reversed), each one-hot label-smoothed first."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    onehot = np.full((len(labels), num_classes), off, dtype=np.float32)
    onehot[np.arange(len(labels)), labels] = on
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
    clipped box area. Takes and returns (images NCHW float32, labels); labels become (B, num_classes) float32.

    Called as a batch map in `create_loader` with the batch's per-sample seeds as a third column, so batches
    mix identically whatever the number of parallel workers.
    """

    def __init__(
        self, mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, label_smoothing=0.0, num_classes=1000
    ):
        if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha + cutmix_alpha == 0:
            raise ValueError(f"Mixup needs mixup_alpha or cutmix_alpha > 0, got {mixup_alpha}, {cutmix_alpha}")
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.num_classes = num_classes

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
        rng = np.random.default_rng(int(seeds[0]))
        lam, use_cutmix = self.sample_params(rng)
        if lam < 1.0 and use_cutmix:
            images = np.array(images, dtype=np.float32)  # writable copy: MindSpore may pass a read-only buffer
            top, bottom, left, right = rand_bbox(images.shape, lam, rng)
            images[:, :, top:bottom, left:right] = images[::-1, :, top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / float(images.shape[-2] * images.shape[-1])
        elif lam < 1.0:
            mixed = images * np.float32(lam)
            mixed += images[::-1] * np.float32(1.0 - lam)
            images = mixed
        return images, mixup_target(labels, self.num_classes, lam, self.label_smoothing)
