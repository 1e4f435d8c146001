"""The policy interface every population policy implements, and the policy registry.

Why: the engine's coordinator decides *when* a population is ranked (a perturbation boundary every
live trial has reached) and *applies* decisions; a policy decides *what* happens there: which
trials are replaced, by whom, with which explored config. Behind this small interface PBT, PB2
and random search are interchangeable, and adding one is one module plus its registration::

    @POLICIES.register("my-policy")
    class MyPolicy(Policy):
        def decide(self, iteration, scores, configs): ...

plus its module in ``POLICIES``' lazy table (so ``pbt.policy: my-policy`` finds it). Policies are
pure: no Ray, no threads, no clock; every random draw comes from an RNG the policy owns, seeded,
and :meth:`Policy.get_state` / :meth:`Policy.set_state` carry everything it remembers across a
resume (JSON-serialisable), so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pbtune.registry import Registry


@dataclass(frozen=True)
class Decision:
    """One exploit + explore: ``target`` loads ``donor``'s state and runs ``new_config``.

    The fields mirror a row of Ray's ``pbt_global.txt`` log; ``old_config`` is the donor's config.
    """

    target: str
    donor: str
    target_iteration: int
    donor_iteration: int
    old_config: dict[str, Any]
    new_config: dict[str, Any]


class Policy(ABC):
    """Decides exploit/explore at perturbation boundaries, from scores at equal progress.

    Args:
        settings: the ``pbt:`` section (:class:`~pbtune.pbt.policy.PBTSettings`).
        mode: ``"max"`` or ``"min"``.
        seed: seeds the policy's own RNG.
    """

    name: ClassVar[str] = ""
    #: False for policies that never perturb (random search): the engine then runs every trial
    #: straight to its end, with no boundaries to wait at.
    perturbs: ClassVar[bool] = True

    def __init__(self, settings: Any, mode: str, seed: int) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.settings = settings
        self.mode = mode
        self.rng = random.Random(seed)

    def is_boundary(self, iteration: int) -> bool:
        """Whether ``iteration`` (training iterations completed) is a perturbation boundary."""
        s = self.settings
        return (self.perturbs and iteration > 0 and iteration >= s.burn_in
                and iteration % s.perturbation_interval == 0)

    @abstractmethod
    def decide(self, iteration: int, scores: Mapping[str, float],
               configs: Mapping[str, Mapping[str, Any]]) -> list[Decision]:
        """Decisions for a population that has all reached ``iteration``.

        Args:
            iteration: the common iteration every trial in ``scores`` has reached.
            scores: trial id → raw metric at ``iteration`` (NaN: an errored trial to replace).
            configs: trial id → current config (covers every id in ``scores``).
        """

    def adjusted(self, iteration: int, scores: Mapping[str, float],
                 configs: Mapping[str, Mapping[str, Any]]) -> dict[str, float] | None:
        """Scores oriented so that higher is better, or None off a boundary (nothing to decide).

        Raises:
            ValueError: a scored trial has no config.
        """
        if not self.is_boundary(iteration):
            return None
        missing = sorted(set(scores) - set(configs))
        if missing:
            raise ValueError(f"decide: no config for scored trials {missing}")
        sign = 1.0 if self.mode == "max" else -1.0
        return {tid: sign * float(score) for tid, score in scores.items()}

    def get_state(self) -> dict[str, Any]:
        """The RNG state as JSON-serialisable lists (``random.getstate()`` holds tuples)."""
        version, internal, gauss_next = self.rng.getstate()
        return {"rng_state": [version, list(internal), gauss_next]}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`get_state` (also after a JSON round trip)."""
        try:
            version, internal, gauss_next = state["rng_state"]
            self.rng.setstate((version, tuple(internal), gauss_next))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{(self.name or 'pbt').upper()} policy state is malformed ({exc}); "
                "was it saved by pbtune?"
            ) from exc


POLICIES: Registry[Policy] = Registry("policy", lazy={
    "pbt": "pbtune.pbt.policy",
    "pb2": "pbtune.pbt.pb2",
    "random": "pbtune.pbt.random_search",
})


def create_policy(name: str, settings: Any, mode: str, seed: int) -> Policy:
    """The policy registered as ``name`` (unknown names list the valid ones)."""
    return POLICIES.create(name, settings, mode, seed)
