"""Batched crop/flip/normalise: same semantics as torchvision's per-image PIL transforms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as TF

from pbtune.workloads._torch_utils import seeded_generator
from pbtune.workloads.augment import crop_flip, draw_crop_flip, normalize


def _images(n: int = 16, c: int = 3, size: int = 32) -> torch.Tensor:
    """Random uint8 images with no zero pixels, so zero padding is recognisable."""
    gen = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, (n, c, size, size), dtype=torch.uint8, generator=gen)


def test_shapes_and_dtype_are_kept() -> None:
    x = _images()
    out = crop_flip(x, seeded_generator(0))
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.is_contiguous()
    gray = _images(4, 1, 28)
    assert crop_flip(gray, seeded_generator(0)).shape == (4, 1, 28, 28)


def test_output_is_the_padded_image_shifted_within_four_pixels_then_maybe_mirrored() -> None:
    x = _images()
    out = crop_flip(x, seeded_generator(3), padding=4)
    dy, dx, flipped = draw_crop_flip(len(x), 4, True, seeded_generator(3))  # same draws
    assert dy.abs().max() <= 4 and dx.abs().max() <= 4
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):
        top, left = 4 + int(dy[i]), 4 + int(dx[i])
        expected = padded[i, :, top:top + 32, left:left + 32]
        if flipped[i]:
            expected = expected.flip(-1)
        assert torch.equal(out[i], expected), i
    # Offsets really vary (not all centred) and some images are padded with zeros.
    assert len({(int(a), int(b)) for a, b in zip(dy, dx, strict=True)}) > 4
    assert (out == 0).any()


def test_flip_only_is_an_exact_mirror_and_happens_about_half_the_time() -> None:
    x = _images(64)
    out = crop_flip(x, seeded_generator(1), padding=0, flip=True)
    mirrored = [bool(torch.equal(o, i.flip(-1))) for o, i in zip(out, x, strict=True)]
    same = [bool(torch.equal(o, i)) for o, i in zip(out, x, strict=True)]
    assert all(m != s for m, s in zip(mirrored, same, strict=True))  # exactly one of the two
    assert 16 <= sum(mirrored) <= 48
    no_flip = crop_flip(x, seeded_generator(1), padding=0, flip=False)
    assert torch.equal(no_flip, x)


def test_deterministic_under_a_seeded_generator() -> None:
    x = _images()
    gen = seeded_generator(7)
    first = crop_flip(x, gen)
    second = crop_flip(x, gen)  # the stream advanced: a different draw
    assert torch.equal(first, crop_flip(x, seeded_generator(7)))
    assert not torch.equal(first, second)
    assert not torch.equal(first, crop_flip(x, seeded_generator(8)))


def test_read_only_uint8_numpy_input_works_and_is_not_modified() -> None:
    array = _images(8).numpy().copy()
    array.flags.writeable = False
    before = array.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # from_numpy warns about read-only arrays
        x = torch.from_numpy(array)
    out = crop_flip(x, seeded_generator(0))
    normed = normalize(out, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    np.testing.assert_array_equal(array, before)
    assert normed.dtype == torch.float32 and torch.isfinite(normed).all()


def test_normalize_matches_to_tensor_and_normalize() -> None:
    x = _images(4)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ours = normalize(x, mean, std)
    ref = torch.stack([TF.normalize(img.float() / 255.0, mean, std) for img in x])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    cl = normalize(x, mean, std, memory_format=torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="3 channels"):
        normalize(x, (0.5,), (0.5,))


def test_rejects_unbatched_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        crop_flip(torch.zeros(3, 32, 32, dtype=torch.uint8), seeded_generator(0))
