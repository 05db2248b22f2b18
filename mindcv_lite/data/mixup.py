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

    def draw(self, seeds, image_size):
        """(lam, box) for the batch with these per-sample seeds: box is (top, bottom, left, right) for CutMix,
        None for Mixup; lam == 1 means no mixing. CutMix's lam is already corrected to the box area."""
        rng = np.random.default_rng(np.asarray(seeds, dtype=np.uint64).ravel().tolist())
        lam, use_cutmix = self.sample_params(rng)
        if lam >= 1.0 or not use_cutmix:
            return lam, None
        height, width = image_size
        top, bottom, left, right = rand_bbox(image_size, lam, rng)
        return 1.0 - (bottom - top) * (right - left) / float(height * width), (top, bottom, left, right)

    @staticmethod
    def mix_pair_(first, second, lam, box):
        """Mix two CHW images with each other in place: swap the box, or blend with weights lam and 1 - lam."""
        if box is not None:
            top, bottom, left, right = box
            first_box = first[:, top:bottom, left:right].copy()
            first[:, top:bottom, left:right] = second[:, top:bottom, left:right]
            second[:, top:bottom, left:right] = first_box
        else:  # first' = lam * first + (1 - lam) * second and second' = lam * second + (1 - lam) * first
            delta = first - second
            delta *= np.float32(1.0 - lam)
            first -= delta
            second += delta

    def __call__(self, images, labels, seeds):
        lam, box = self.draw(seeds, images.shape[-2:])
        if lam < 1.0:
            if not images.flags.writeable:  # MindSpore may hand over a read-only buffer
                images = images.copy()
            # sample i pairs with sample B-1-i (timm's batch mode); an odd middle sample mixes with itself
            for i in range(len(images) // 2):
                self.mix_pair_(images[i], images[len(images) - 1 - i], lam, box)
        return images, mixup_target(labels, self.num_classes, lam)
