"""Batched image augmentation and normalisation on the training device.

Why: torchvision's usual recipe (``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize`` per image in PIL inside a DataLoader) costs more CPU per image than a
small ResNet step on a GPU, and DataLoader worker processes each hold a copy of the dataset. Here a
whole minibatch of uint8 images is cropped, flipped and normalised with a few tensor ops on the
device that trains, drawing randomness from the workload's own ``torch.Generator`` (so the data
stream is part of the checkpoint and identical on replay). Crop and flip are one gather: the flip
just reverses the column index of the crop window, so no intermediate batch is materialised.

All functions accept read-only input (e.g. views into Ray's object store) and never write to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["AugmentStream", "crop_flip", "draw_crop_flip", "normalize"]


class AugmentStream:
    """Augmentation randomness on the training device whose state is device-independent.

    Why: a CUDA generator's state (Philox: 16 bytes) and a CPU generator's (Mersenne Twister:
    5,056 bytes) are different things; ``set_state`` with the other device's raises, so a GPU
    trial's state could not continue on a CPU worker (mixed populations migrate trials) nor load
    on a laptop. Here the *state* is a CPU seed stream; each batch's draws come from a device
    generator reseeded from it (``manual_seed`` is a host-side call: no sync). The same device
    type replays the same draws bit for bit; another device type continues with a different but
    equally random stream.
    """

    def __init__(self, seed: int, device: str | torch.device = "cpu") -> None:
        self.seeds = torch.Generator()
        self.seeds.manual_seed(int(seed))
        self.device_generator = torch.Generator(device=device)

    def generator(self) -> torch.Generator:
        """The device generator, freshly seeded for one batch."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.seeds))
        self.device_generator.manual_seed(seed)
        return self.device_generator

    def get_state(self) -> torch.Tensor:
        """The seed stream's state (a CPU uint8 tensor, the same on every device)."""
        return self.seeds.get_state().clone()

    def set_state(self, state: torch.Tensor) -> None:
        self.seeds.set_state(state.detach().to("cpu", dtype=torch.uint8, copy=True))


def draw_crop_flip(
    batch: int,
    padding: int,
    flip: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw per-image crop offsets and flip flags from ``generator`` (on its device).

    Returns:
        ``(dy, dx, flipped)``: offsets in ``[-padding, padding]`` pixels (the shift of the crop
        window relative to the unpadded image) and a bool flip mask, each of shape ``(batch,)``.
    """
    device = generator.device
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device=device)
    if flip:
        flipped = torch.rand(batch, generator=generator, device=device) < 0.5
    else:
        flipped = torch.zeros(batch, dtype=torch.bool, device=device)
    return offsets[0] - padding, offsets[1] - padding, flipped


def crop_flip(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    padding: int = 4,
    flip: bool = True,
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a batch, in one gather.

    Same distribution as torchvision's ``RandomCrop(size, padding=padding)`` followed by
    ``RandomHorizontalFlip(0.5)``: each image is zero-padded by ``padding`` pixels on every side, a
    window of the original size is taken at a uniform offset, and it is mirrored with
    probability 0.5.

    Args:
        images: ``(B, C, H, W)`` tensor of any dtype (uint8 expected), on the generator's device.
        generator: the workload's private generator; it must live on ``images.device``.
        padding: padding in pixels (crop offsets fall in ``[-padding, padding]``).
        flip: whether to apply random horizontal flips.

    Returns:
        A new ``(B, C, H, W)`` tensor of the input dtype; the input is never modified.
    """
    if images.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    dy, dx, flipped = draw_crop_flip(b, padding, flip, generator)
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    ar_h = torch.arange(h, device=images.device)
    ar_w = torch.arange(w, device=images.device)
    rows = (dy + padding)[:, None] + ar_h[None, :]  # (B, H) rows of the padded image
    cols_fwd = ar_w[None, :].expand(b, w)
    cols = torch.where(flipped[:, None], cols_fwd.flip(1), cols_fwd) + (dx + padding)[:, None]
    batch_idx = torch.arange(b, device=images.device)[:, None, None]
    # Advanced indices around a slice: the result is (B, H, W, C); put channels back in front.
    out = padded[batch_idx, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` in 0..255 → ``(x / 255 - mean) / std`` as ``dtype``.

    Equivalent to ``ToTensor`` + ``Normalize`` but one fused affine map per channel
    (``x * scale + shift``), so a batch costs two elementwise ops instead of four.
    """
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for {channels} channels")
    scale, shift = _affine(tuple(map(float, mean)), tuple(map(float, std)), images.device)
    out = torch.addcmul(shift, images.to(torch.float32), scale)
    return out.to(dtype=dtype, memory_format=memory_format)


# (mean, std, device) → (scale, shift), each (1, C, 1, 1) on the device.
_AFFINE: dict[tuple[tuple[float, ...], tuple[float, ...], str], tuple[torch.Tensor, ...]] = {}


def _affine(mean: tuple[float, ...], std: tuple[float, ...],
            device: torch.device) -> tuple[torch.Tensor, ...]:
    """The per-channel affine map, built once per device.

    Why cached: ``torch.tensor(list, device=cuda)`` is a blocking host-to-device copy; built per
    batch it made every training and evaluation step wait for the GPU twice, so the CPU could
    never queue the next step while the GPU ran this one.
    """
    key = (mean, std, str(device))
    hit = _AFFINE.get(key)
    if hit is None:
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        hit = _AFFINE[key] = ((1.0 / (255.0 * std_t)).to(device), (-mean_t / std_t).to(device))
    return hit
