"""``dcgan-digits`` and ``dcgan-mnist``: PBT of a DCGAN, scored by the inception score.

Why: the Ray Tune PBT guide's generative example, without its two defects: it perturbed by wall
seconds while checkpointing by iterations, and scored one training batch. Here one iteration is
``steps_per_iteration`` batches (each a discriminator step then a generator step), and every
evaluation scores the same ``eval_samples`` generator outputs from fixed noise, in eval mode,
with a LeNet trained on the same data (:mod:`pbtune.workloads.inception`), so trials are ranked
on equal terms. It is the first workload with two models and two optimisers (Adam, β1 = 0.5):
exploit copies both networks, both optimiser states and the step (:class:`TorchWorkload`), and
``lr_g`` / ``lr_d`` are set in place in their own optimiser. Each evaluation also leaves an 8×8
grid of samples (:meth:`DCGANWorkload.artifacts`), which the run keeps per trial at its best
iteration (``plots/samples_<trial>.png``, in ``report.html``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from pbtune.errors import UserError
from pbtune.workloads import datasets, inception
from pbtune.workloads.gan_models import IMAGE, Discriminator, Generator, dcgan_init, to_unit
from pbtune.workloads.registry import register
from pbtune.workloads.torch_workload import TorchWorkload

_LR = {"loguniform": [1e-5, 1e-2]}  # explore stays inside it (clipped)
_CLASSIFIER = "classifier/"  # data keys holding the scorer's weights


def resize(images: np.ndarray, scale: float) -> np.ndarray:
    """(N, H, W) images with values in 0..scale → uint8 (N, 1, 32, 32), bilinear."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) * (255.0 / scale))[:, None]
    x = F.interpolate(x, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


class DCGANWorkload(TorchWorkload):
    """A DCGAN on single-channel 32×32 images; subclasses say which data set."""

    metrics: ClassVar[Mapping[str, str]] = {"inception_score": "max", "loss_g": "min",
                                            "loss_d": "min"}
    default_metric: ClassVar[str] = "inception_score"
    hyperparameters: ClassVar[tuple[str, ...]] = ("lr_g", "lr_d", "beta1")
    default_config: ClassVar[Mapping[str, Any]] = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5}
    default_param_space: ClassVar[Mapping[str, Any]] = {"lr_g": _LR, "lr_d": _LR, "beta1": 0.5}
    default_mutations: ClassVar[Mapping[str, Any]] = {"lr_g": _LR, "lr_d": _LR}
    param_group_keys: ClassVar[Mapping[str, Any]] = {"lr_g": "generator:lr",
                                                     "lr_d": "discriminator:lr"}
    manual_optimization: ClassVar[bool] = True
    train_arrays: ClassVar[tuple[str, ...]] = ("train_x",)
    eval_arrays: ClassVar[tuple[str, ...]] = ("val_x",)
    title: ClassVar[str] = ""
    default_options: ClassVar[Mapping[str, Any]] = {
        "steps_per_iteration": 50,  # batches per iteration (each: one D step, one G step)
        "batch_size": 64,
        "nz": 100,  # latent size
        "ngf": 32, "ndf": 32,  # generator / discriminator widths
        "eval_samples": 512,  # generated images scored per evaluation (fixed noise)
        "eval_splits": 10,  # parts the inception score is averaged over
        "eval_seed": 0,  # the fixed noise: the same for every trial
        "grid": 64,  # samples in the saved grid (a square number)
        "cache_dir": None,  # the classifier cache (None: $PBTUNE_CACHE_DIR or ~/.cache/pbtune)
        "classifier_epochs": 30,
        "min_classifier_accuracy": 0.95,
    }

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        opts = super().resolve_options(options)
        for key in ("nz", "ngf", "ndf", "eval_samples", "eval_splits", "grid",
                    "classifier_epochs"):
            if isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < 1:
                raise UserError(f"{cls.name}: option {key} must be an integer >= 1, "
                                f"got {opts[key]!r}")
        if opts["eval_samples"] < 2 * opts["eval_splits"]:
            raise UserError(f"{cls.name}: eval_samples ({opts['eval_samples']}) must be at least "
                            f"twice eval_splits ({opts['eval_splits']})")
        if math.isqrt(opts["grid"]) ** 2 != opts["grid"] or opts["grid"] > opts["eval_samples"]:
            raise UserError(f"{cls.name}: grid must be a square number <= eval_samples, "
                            f"got {opts['grid']}")
        return opts

    @classmethod
    def images(cls, opts: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """uint8 (N, 1, 32, 32) ``train_x``, ``val_x`` and labelled ``test_x``/``test_y``
        (what the classifier is checked on) plus ``train_y``."""
        raise NotImplementedError

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The images, and the weights of the classifier that scores samples (trained once per
        data set and cached; its test accuracy is printed and checked)."""
        opts = cls.resolve_options(options)
        data = cls.images(opts)
        weights = inception.trained_classifier(
            cls.title, (data["train_x"], data["train_y"]), (data["test_x"], data["test_y"]),
            cache_dir=opts["cache_dir"], epochs=opts["classifier_epochs"],
            min_accuracy=float(opts["min_classifier_accuracy"]))
        return {"train_x": data["train_x"], "val_x": data["val_x"], "test_x": data["test_x"],
                "test_y": data["test_y"], **{_CLASSIFIER + k: v for k, v in weights.items()}}

    def __init__(self, config: Mapping[str, Any], *, data: Any = None,
                 options: Mapping[str, Any] | None = None, seed: int = 0, device: str = "cpu",
                 precision: str = "fp32") -> None:
        if data is None:
            data = self.load_data(options or {})
        super().__init__(config, data=data, options=options, seed=seed, device=device,
                         precision=precision)
        weights = {k[len(_CLASSIFIER):]: v for k, v in data.items() if k.startswith(_CLASSIFIER)}
        if not weights:
            raise UserError(f"{self.name}: data has no classifier weights; pass what load_data "
                            "returns")
        self.classifier = inception.build_classifier(weights, self._device)
        noise = torch.Generator().manual_seed(int(self.options["eval_seed"]))
        self.noise = torch.randn(int(self.options["eval_samples"]), int(self.options["nz"]), 1, 1,
                                 generator=noise).to(self._device)  # fixed: equal terms
        self.grid: np.ndarray | None = None

    def build_model(self, options: Mapping[str, Any]) -> dict[str, torch.nn.Module]:
        generator = Generator(int(options["nz"]), int(options["ngf"]))
        discriminator = Discriminator(int(options["ndf"]))
        generator.apply(dcgan_init)
        discriminator.apply(dcgan_init)
        return {"generator": generator, "discriminator": discriminator}

    def build_optimizer(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        return {name: torch.optim.Adam(net.parameters(), lr=2e-4,
                                       betas=(float(config["beta1"]), 0.999))
                for name, net in model.items()}

    def train_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator step on real + fake, then one generator step."""
        g, d = self.model["generator"], self.model["discriminator"]
        real = to_unit(batch)
        z = torch.randn(real.shape[0], int(self.options["nz"]), 1, 1, device=real.device)
        fake = g(z)
        ones, zeros = torch.ones(real.shape[0], device=real.device), torch.zeros(
            real.shape[0], device=real.device)
        loss_d = (F.binary_cross_entropy_with_logits(d(real), ones)
                  + F.binary_cross_entropy_with_logits(d(fake.detach()), zeros))
        self.backward_step(loss_d, "discriminator")
        loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
        self.backward_step(loss_g, "generator")
        loss_d, loss_g = loss_d.detach(), loss_g.detach()
        return {"loss": loss_d + loss_g, "loss_d": loss_d, "loss_g": loss_g}  # loss: the sum

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Inception score of the fixed-noise samples; D/G losses on them and held-out images."""
        g, d = self.model["generator"], self.model["discriminator"]
        g.eval()
        d.eval()
        step = int(self.options["eval_batch_size"])
        fakes, fake_logits, real_logits = [], [], []
        for i in range(0, self.noise.shape[0], step):
            with self.autocast():
                fake = g(self.noise[i:i + step]).float()
                fake_logits.append(d(fake).float())
            fakes.append(fake)
        real = self.eval_data[0][: self.noise.shape[0]]
        for i in range(0, real.shape[0], step):
            with self.autocast():
                real_logits.append(d(to_unit(real[i:i + step])).float())
        fake, fl, rl = torch.cat(fakes), torch.cat(fake_logits), torch.cat(real_logits)
        probs = inception.class_probabilities(self.classifier, fake)
        score, spread = inception.inception_score(probs, int(self.options["eval_splits"]))
        self.grid = _grid(fake[: int(self.options["grid"])])
        loss_d = (F.binary_cross_entropy_with_logits(rl, torch.ones_like(rl))
                  + F.binary_cross_entropy_with_logits(fl, torch.zeros_like(fl)))
        loss_g = F.binary_cross_entropy_with_logits(fl, torch.ones_like(fl))
        return {"inception_score": score, "inception_std": spread,
                "loss_g": float(loss_g), "loss_d": float(loss_d)}

    def artifacts(self) -> dict[str, np.ndarray]:
        """The last evaluation's samples as one image (``plots/samples_<trial>.png``)."""
        return {} if self.grid is None else {"samples": self.grid}


def _grid(images: torch.Tensor) -> np.ndarray:
    """(N, 1, 32, 32) in [-1, 1] → one uint8 (H, W) image, √N × √N with 2-pixel gaps."""
    from torchvision.utils import make_grid

    side = math.isqrt(images.shape[0])
    grid = make_grid(images.cpu(), nrow=side, padding=2, normalize=True, value_range=(-1, 1))
    return (grid[0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()


@register()
class DCGANDigits(DCGANWorkload):
    """scikit-learn's 1,797 digits upsampled to 32×32 (offline): 1,437 train / 360 held out."""

    name: ClassVar[str] = "dcgan-digits"
    title: ClassVar[str] = "digits"
    default_options: ClassVar[Mapping[str, Any]] = {
        **DCGANWorkload.default_options, "steps_per_iteration": 25, "split_seed": 0}

    @classmethod
    def images(cls, opts: Mapping[str, Any]) -> dict[str, np.ndarray]:
        from pbtune.workloads.digits import _stratified_split, read_digits

        images, y = read_digits()
        train, held_out = _stratified_split(y, 0.2, int(opts["split_seed"]))
        x = resize(images, 16.0)  # pixel values are 0..16
        return {"train_x": x[train], "train_y": y[train], "val_x": x[held_out],
                "test_x": x[held_out], "test_y": y[held_out]}


@register()
class DCGANMNIST(DCGANWorkload):
    """MNIST (idx files in ``data_dir``/MNIST/raw) resized to 32×32: 55,000 train."""

    name: ClassVar[str] = "dcgan-mnist"
    title: ClassVar[str] = "MNIST"
    default_options: ClassVar[Mapping[str, Any]] = {
        **DCGANWorkload.default_options, "classifier_epochs": 2, "min_classifier_accuracy": 0.97,
        "data_dir": "./data", "download": True, "verify_checksums": True, "val_size": 5000,
        "split_seed": 0}

    @classmethod
    def images(cls, opts: Mapping[str, Any]) -> dict[str, np.ndarray]:
        arrays = datasets.create("mnist", opts["data_dir"], val_size=int(opts["val_size"]),
                                 split_seed=int(opts["split_seed"]),
                                 download=bool(opts["download"]),
                                 verify_checksums=bool(opts["verify_checksums"]))
        return {"train_x": resize(arrays["train_x"], 255.0), "train_y": arrays["train_y"],
                "val_x": resize(arrays["val_x"], 255.0),
                "test_x": resize(arrays["test_x"], 255.0), "test_y": arrays["test_y"]}
