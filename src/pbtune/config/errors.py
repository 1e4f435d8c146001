"""Schema violations as one-line messages: unknown keys with a did-you-mean, pydantic's errors.

Why apart from the schema: the schema says what a config may hold; this module says what the user
reads when it does not — the dotted key, the value, the layer that set it (file, ``PBTUNE_*``
variable or ``--set`` flag) and a guess at what was meant — in one line, never a pydantic dump.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from pbtune.config.schema import ExperimentConfig
from pbtune.config.types import Key
from pbtune.errors import ConfigError


def section_fields(path: tuple[str, ...]) -> dict[str, Any] | None:
    """Field name → field info of the model at ``path`` (``()`` = top level), or None.

    ``None`` means the value at ``path`` is free-form (a plain dict such as ``param_space``) or a
    scalar, so keys below it are not checked against the schema.
    """
    model: type[BaseModel] = ExperimentConfig
    for part in path:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return dict(model.model_fields)


def all_keys(prefix: tuple[str, ...] = ()) -> list[str]:
    """Every dotted key of the schema (``pbt.quantile_fraction``), for did-you-mean suggestions."""
    fields = section_fields(prefix) or {}
    keys = []
    for name in fields:
        path = (*prefix, name)
        keys.append(".".join(path))
        if section_fields(path) is not None:
            keys.extend(all_keys(path))
    return keys


def describe_source(key: Key, sources: Mapping[Key, str]) -> str:
    """`` (from --set pbt.burn_in=4)``: the layer that set ``key`` or its nearest parent."""
    for n in range(len(key), 0, -1):
        if key[:n] in sources:
            return f" (from {sources[key[:n]]})"
    return ""


def check_keys(data: Any, prefix: Key, sources: Mapping[Key, str]) -> None:
    """Reject unknown keys with a did-you-mean; pydantic alone would only say "extra input"."""
    fields = section_fields(prefix)
    if fields is None or not isinstance(data, Mapping):
        return
    for raw_key, value in data.items():
        name = str(raw_key)
        key = (*prefix, name)
        if name in fields:
            check_keys(value, key, sources)
            continue
        dotted = ".".join(key)
        close = difflib.get_close_matches(name, list(fields), n=1)
        everywhere = all_keys()
        same_leaf = [k for k in everywhere if k.rsplit(".", 1)[-1] == name]
        # The same key in another section (``perturbation_interval`` at the top level) is a
        # better guess than a similar-looking sibling (``report_interval``).
        guess = (
            same_leaf[0] if same_leaf
            else ".".join((*prefix, close[0])) if close
            else next(iter(difflib.get_close_matches(dotted, everywhere, n=1, cutoff=0.75)), None)
        )
        hint = f" — did you mean {guess!r}?" if guess else ""
        section = ".".join(prefix) or "top-level"
        raise ConfigError(
            f"unknown config key {dotted!r}{describe_source(key, sources)}{hint} "
            f"(valid {section} keys: {', '.join(fields)})"
        )


def format_error(exc: ValidationError, sources: Mapping[Key, str]) -> str:
    """The first of pydantic's errors as ``config error: key = value: problem (from source)``."""
    errors = exc.errors()
    err = errors[0]
    loc = [p for p in err["loc"] if p != "[key]"]
    key = tuple(str(p) for p in loc)
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    msg = err["msg"]
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif err["type"] in ("dict_type", "model_type", "model_attributes_type"):
        msg = "must be a mapping"
    else:
        msg = msg[:1].lower() + msg[1:]
    more = len({tuple(e["loc"]) for e in errors}) - 1
    tail = f" (and {more} more)" if more > 0 else ""
    if not key:  # a cross-field check: its message names the keys itself
        return one_line(f"config error: {msg}{tail}")
    value = _show(err["input"])
    return one_line(f"config error: {dotted} = {value}: {msg}{describe_source(key, sources)}{tail}")


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def one_line(text: str) -> str:
    """Collapse whitespace: a UserError is printed as a single ``error: ...`` line."""
    return " ".join(text.split())
