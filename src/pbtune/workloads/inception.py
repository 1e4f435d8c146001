"""The inception score, and the local classifier it is computed with (trained once, cached).

Why a local classifier: the score needs class probabilities of generated images; Inception-v3
weights cannot be downloaded here and mean little for 32×32 digits anyway. As in the Ray Tune
PBT guide, a LeNet trained on the same data set scores the samples. It is trained before the run
(in ``load_data``, on the driver) once per data set and training recipe, cached in a folder under
a key made of the data's hash, and its test accuracy is printed and must reach a threshold: a
weak classifier would make every score meaningless.

The classifier has one class more than the data: "not a digit", trained on uniform-noise images.
Without it, a LeNet spreads noise over the digit classes with some confidence (measured: uniform
noise over the full pixel range scored 2.8 on digits), crediting a generator that outputs noise
with diversity; with it, noise scores near 1, like a collapsed generator.

Definition (Salimans et al., 2016): ``IS = exp(E_x KL(p(y|x) || p(y)))``, computed on ``splits``
equal parts of the samples, reported as the mean (and standard deviation) over the parts. Its
range is 1 (every sample the same class, or every prediction uniform) to the number of classes.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pbtune.errors import UserError
from pbtune.store.checkpoints import atomic_write
from pbtune.workloads.gan_models import LeNet, to_unit

RECIPE = "lenet32-adam1e-3-b128-reject-v2"  # part of the cache key: change with the training
REJECT_SHARE = 0.1  # uniform-noise images added to training, as one "not a digit" class


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """``(mean, std)`` of the inception score over ``splits`` parts of ``probs`` (N, classes)."""
    if probs.dim() != 2 or probs.shape[0] < splits or splits < 1:
        raise ValueError(f"need (N, classes) probabilities with N >= splits = {splits}, got "
                         f"{tuple(probs.shape)}")
    probs = probs.double().clamp_min(1e-12)
    scores = []
    for part in probs.chunk(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (part.log() - marginal.log())).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


@torch.no_grad()
def class_probabilities(classifier: torch.nn.Module, images: torch.Tensor,
                        batch: int = 1024) -> torch.Tensor:
    """Softmax outputs of ``classifier`` for float images in [-1, 1] (N, 1, 32, 32)."""
    classifier.eval()
    return torch.cat([F.softmax(classifier(images[i:i + batch].float()), 1)
                      for i in range(0, images.shape[0], batch)])


def build_classifier(weights: Mapping[str, np.ndarray], device: Any = "cpu") -> LeNet:
    """The trained classifier from the arrays :func:`trained_classifier` returned."""
    net = LeNet(classes=int(np.shape(weights["head.3.weight"])[0]))
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return net.to(device).eval()


def trained_classifier(title: str, train: tuple[np.ndarray, np.ndarray],
                       test: tuple[np.ndarray, np.ndarray], *, cache_dir: str | Path | None,
                       epochs: int, min_accuracy: float) -> dict[str, np.ndarray]:
    """LeNet weights (numpy) for uint8 images (N, 1, 32, 32): from the cache, else trained now.

    Raises:
        UserError: its test accuracy is below ``min_accuracy`` (naming both numbers).
    """
    key = hashlib.sha256(RECIPE.encode() + str(epochs).encode())
    for array in (*train, *test):
        key.update(np.ascontiguousarray(array).tobytes())
    path = _cache_dir(cache_dir) / f"classifier-{key.hexdigest()[:20]}.npz"
    weights, accuracy, how = _read(path), None, "cached"
    if weights is not None:
        accuracy = float(weights.pop("__accuracy__"))
    else:
        weights, accuracy = _train(train, test, epochs)
        buffer = io.BytesIO()
        np.savez(buffer, __accuracy__=np.array(accuracy), **weights)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getvalue())  # two runs at once: each writes a whole file
        how = "trained now"
    print(f"{title}: inception-score classifier test accuracy {accuracy:.4f} ({how}; {path})",
          flush=True)
    if accuracy < min_accuracy:
        raise UserError(f"{title}: the inception-score classifier reached only {accuracy:.4f} "
                        f"test accuracy (< {min_accuracy}); its scores would mislead. Raise "
                        "options.classifier_epochs or check the data")
    return weights


def _cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PBTUNE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pbtune"


def _read(path: Path) -> dict[str, np.ndarray] | None:
    """The cached weights, or None when absent or unreadable (then it is trained again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            weights = {k: archive[k] for k in archive.files}
        expected = set(LeNet().state_dict()) | {"__accuracy__"}  # names; sizes checked on load
        return weights if set(weights) == expected else None
    except (OSError, ValueError, EOFError):
        return None


def _train(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
           epochs: int) -> tuple[dict[str, np.ndarray], float]:
    """Adam, batch 128, ``epochs`` epochs from a fixed seed; returns (weights, test accuracy).

    The training set gets ``REJECT_SHARE`` × N uniform-noise images labelled with the extra
    class (index = the number of data classes)."""
    classes = int(max(train[1].max(), test[1].max())) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = LeNet(classes=classes + 1)
        x, y = to_unit(torch.from_numpy(train[0])), torch.from_numpy(train[1]).long()
        n_noise = max(1, int(len(x) * REJECT_SHARE))
        noise = torch.rand(n_noise, *x.shape[1:]) * 2 - 1
        x, y = torch.cat([x, noise]), torch.cat([y, torch.full((n_noise,), classes)])
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        net.train()
        for _ in range(int(epochs)):
            for idx in torch.randperm(len(x), generator=generator).split(128):
                loss = F.cross_entropy(net(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    probs = class_probabilities(net, to_unit(torch.from_numpy(test[0])))
    accuracy = float((probs.argmax(1) == torch.from_numpy(test[1]).long()).double().mean())
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}, accuracy
