"""The Python API: ``pbtune.run``, ``pbtune.resume``, ``pbtune.load`` and their :class:`Result`.

The CLI is a thin shell over these (``pbtune run`` → :func:`pbtune.api.experiment.run_experiment`,
``pbtune resume`` → :func:`pbtune.api.resuming.resume_run`), so a run started from Python is the
same run, with the same files, as one started from the command line.
"""

from __future__ import annotations

from pbtune.api.compare import compare
from pbtune.api.experiment import experiment_config, load, resume, run
from pbtune.api.result import Result

__all__ = ["Result", "compare", "experiment_config", "load", "resume", "run"]
