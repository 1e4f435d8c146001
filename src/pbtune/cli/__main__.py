"""``python -m pbtune.cli``."""

from pbtune.cli import console

console()
