"""Random search as a policy: the sampled population trains to the end, never perturbed.

Why a policy and not a flag: the ablation PBT must beat (``pbtune bench``'s ``random`` method)
runs through the same coordinator, dispatch and result files as PBT and PB2; only the decisions
differ (there are none). ``pbt.enabled: false`` selects it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbtune.pbt.base import POLICIES, Decision, Policy


@POLICIES.register("random")
class RandomSearch(Policy):
    """No boundaries, no decisions: each trial keeps its sampled config to the end."""

    perturbs = False

    def decide(self, iteration: int, scores: Mapping[str, float],
               configs: Mapping[str, Mapping[str, Any]]) -> list[Decision]:
        return []
