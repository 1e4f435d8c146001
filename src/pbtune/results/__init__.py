"""Results: run directories with provenance, trials.csv, PBT logs, summaries."""

from __future__ import annotations

from pbtune.results.rundir import create_run_dir, git_revision, write_metadata
from pbtune.results.writer import ResultsWriter

__all__ = ["ResultsWriter", "create_run_dir", "git_revision", "write_metadata"]
