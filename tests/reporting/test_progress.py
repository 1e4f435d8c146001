"""The plain-text report (no terminal): headline, node use and a per-trial table on a timer."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from pbtune.config import load_config, resolve
from pbtune.engines import create_engine
from pbtune.reporting import status_view
from pbtune.reporting.progress import ProgressPrinter, text_table

TOY = f"{Path(__file__).parents[1] / 'engines' / 'toy_workload.py'}:Counter"
STAMP = r"\[\s*\d+\.\d+s\] "


def toy_config(**overrides):
    sets = {"workload": TOY, "population": 4, "seed": 3, "resources.slots": 2,
            "stop.max_iterations": 6, "stop.metric_threshold": None,
            "pbt.perturbation_interval": 2, "report_interval": 0.3, "options.sleep": 0.08}
    sets.update(overrides)
    return resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()], env={}))


def test_text_table_aligns_and_cuts_cells():
    lines = text_table(["trial", "lr"], [["t000", "0.1"], ["t001", "x" * 30]], max_width=8)
    assert lines == ["trial  lr", "t000   0.1", "t001   xxxxxxx~"]


def test_status_view_choice():
    cfg = toy_config()
    assert status_view(cfg, quiet=True) is None
    plain = status_view(cfg, tty=False)
    assert isinstance(plain, ProgressPrinter) and plain.interval_s == 0.3
    from pbtune.reporting.live import LiveStatus

    assert isinstance(status_view(cfg, tty=True), LiveStatus)


@pytest.mark.ray
def test_plain_report_of_a_real_run(ray_local):
    cfg = toy_config()
    stream = io.StringIO()
    printer = status_view(cfg, tty=False)
    printer.stream = stream
    summary = create_engine(cfg, [printer]).run()
    lines = stream.getvalue().splitlines()
    assert all(re.match(STAMP, line) for line in lines)
    body = [re.sub(STAMP, "", line) for line in lines]
    assert body[0] == "4 trials on 2 workers (1 node); a report every 0.3 s"
    reports = [i for i, line in enumerate(body) if line.startswith("report: ")]
    assert len(reports) >= 2  # at least one periodic report during the run, plus the final one
    head = re.compile(r"report: (\d+)/24 iterations \((\d+)%\), [\d.]+ it/s, ETA \S+, best score "
                      r"(?:n/a|[\d.]+ \(t\d{3} @ \d\)), exploits (\d)")
    for i in reports:
        match = head.match(body[i])
        assert match, body[i]
        assert re.match(r"  nodes: \S+ \(2 workers\) cpu (-|\d+%) gpu (-|\d+%)", body[i + 1])
        assert body[i + 2].split() == ["trial", "status", "node", "lr", "score", "iter", "time",
                                       "last", "exploit"]
        assert [body[i + 3 + n].split()[0] for n in range(4)] == ["t000", "t001", "t002", "t003"]
    assert re.search(r"cpu \d+%", body[reports[-1] + 1])  # the workers' psutil reading
    final = body[reports[-1]:]
    assert head.match(final[0]).group(1) == "24" and head.match(final[0]).group(3) == "2"
    for row in final[3:7]:  # every trial finished its 6 iterations
        cells = row.split()
        assert cells[1] == "TERMINATED" and cells[5] == "6"
    exploited = [line for line in body if line.startswith("exploit: ")]
    assert len(exploited) == summary["exploits"] == 2
    targets = {re.match(r"exploit: (t\d+) <- (t\d+) at iteration (\d)", e).group(1)
               for e in exploited}
    for row in final[3:7]:  # the table shows each target's last exploit
        cells = row.split()
        assert (cells[0] in targets) == ("<-" in cells)
    assert body[-1] == "stopped: max_iterations"
