"""The pure PBT policy layer: search-space domains, explore, and exploit decisions.

Why: everything PBT *decides* lives here, free of Ray and torch, so it is fast to test and the
same seed and scores give the same decisions under any engine.
"""

from __future__ import annotations

from pbtune.pbt.base import POLICIES, Decision, Policy, create_policy
from pbtune.pbt.domains import (
    Choice,
    Domain,
    LogRandInt,
    LogUniform,
    QLogUniform,
    QUniform,
    RandInt,
    RandN,
    Uniform,
    is_domain,
)
from pbtune.pbt.explore import explore, load_callable
from pbtune.pbt.policy import (
    PBTPolicy,
    PBTSettings,
    quantile_split,
    safe_from_exploit,
)
from pbtune.pbt.space import DOMAIN_NAMES, parse_domain, parse_space, sample_config

__all__ = [
    "DOMAIN_NAMES",
    "POLICIES",
    "Choice",
    "Decision",
    "Domain",
    "LogRandInt",
    "LogUniform",
    "PBTPolicy",
    "PBTSettings",
    "Policy",
    "QLogUniform",
    "QUniform",
    "RandInt",
    "RandN",
    "Uniform",
    "create_policy",
    "explore",
    "is_domain",
    "load_callable",
    "parse_domain",
    "parse_space",
    "quantile_split",
    "safe_from_exploit",
    "sample_config",
]
