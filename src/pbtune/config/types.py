"""The config's building blocks: dotted keys, numbers that refuse booleans, the strict base model.

Why apart: the schema's sections live in several modules (:mod:`pbtune.config.schema`,
:mod:`pbtune.config.resources`) and must share exactly one notion of a number and of a model that
is frozen and forbids unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

#: A dotted config key as a tuple: ``("pbt", "quantile_fraction")``.
Key = tuple[str, ...]


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode turns ``true`` into 1; ``population: true`` is a typo, not a number.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_reject_bool)]
Float = Annotated[float, BeforeValidator(_reject_bool)]


class StrictModel(BaseModel):
    """Frozen (a run cannot change its own config), no unknown keys (a typo is never ignored),
    no inf/NaN."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
