"""User-facing errors.

Why: every mistake a user can make (bad config, unknown workload, missing data file) must end in a
one-line message and exit code 2, never a traceback. Library code raises :class:`UserError`; the
CLI catches it, prints ``error: <message>`` and exits 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the message names the problem and the fix, on one line."""

    exit_code = 2


class ConfigError(UserError):
    """The experiment config (file, environment, overrides or arguments) is invalid."""
