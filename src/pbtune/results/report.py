"""``report.html``: one self-contained page per run, readable offline and attachable to an email.

Why: a run directory holds a dozen files; a newcomer (or a reviewer months later) wants one page:
the best trial and its config, how every trial ended, the plots, what was exploited and what went
wrong. The page has inline CSS and the plots embedded as base64 ``data:`` URIs, so it needs no
network and survives being moved; the only relative links point at the run's own files, and only
at those that exist.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from pbtune.results.plots import damaged, make_plots, read_decisions, read_trials, run_metric

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
tr.best td { background: #eaf6ea; font-weight: 600; }
.ERROR { color: #b00020; font-weight: 600; } .box { background: #f7f7f9; padding: 0.6em 1em;
       border-radius: 6px; display: inline-block; } img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f9; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
"""

#: Run files the page links to when present.
LINKED = ("config.yaml", "summary.json", "meta.json", "trials.csv", "timeline.csv",
          "pbt_global.txt", "best_model.pt")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]], left: int = 1,
           row_class: list[str] | None = None) -> str:
    """An HTML table; the first ``left`` columns are left-aligned; cells are escaped."""
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="l"' if i < left else ""
        text = html.escape(_fmt(value))
        if str(value) == "ERROR":
            text = f'<span class="ERROR">{text}</span>'
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{row_class[n]}"' if row_class and row_class[n] else ""
        body.append(f"<tr{cls}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise damaged(path, exc) from None
    if not isinstance(data, dict):
        raise damaged(path, "not a JSON object")
    return data


def trial_table(run_dir: Path, summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Per trial: status, iterations, final and best metric, final config, exploits."""
    frame = read_trials(run_dir)
    metric = run_metric(run_dir, frame)
    mode = summary.get("mode", "max")
    decisions = read_decisions(run_dir / "pbt_global.txt")
    params = [c for c in frame.columns if c.startswith("config/")]
    errors = summary.get("errors") or {}
    header = ["trial", "status", "iterations", f"final {metric}", f"best {metric}",
              *(p.removeprefix("config/") for p in params), "exploits"]
    rows = []
    for trial_id, group in frame.groupby("trial_id"):
        last = group.iloc[-1]
        values = group[metric] if metric in group else None
        best = None
        if values is not None and values.notna().any():
            best = float(values.max() if mode == "max" else values.min())
        status = "ERROR" if trial_id in errors else ("TERMINATED" if summary else "incomplete")
        rows.append([trial_id, status, int(last["iteration"]),
                     float(last[metric]) if metric in last else None, best,
                     *(last[p].item() if hasattr(last[p], "item") else last[p] for p in params),
                     sum(1 for d in decisions if d[0] == trial_id)])
    return header, rows


def build_report(run_dir: str | Path, *, plots: bool = True) -> Path:
    """Write ``<run_dir>/report.html`` (drawing the plots first unless ``plots`` is False)."""
    run_dir = Path(run_dir)
    images = make_plots(run_dir) if plots else {}
    summary = _load_json(run_dir / "summary.json")
    meta = _load_json(run_dir / "meta.json")
    best = summary.get("best") or {}
    parts = [f"<h1>pbtune run {html.escape(run_dir.parent.name)} / "
             f"{html.escape(run_dir.name)}</h1>"]
    parts.append('<p class="meta">' + html.escape(
        f"started {meta.get('started_at', '?')} on {meta.get('host', '?')}, pbtune "
        f"{meta.get('version', '?')}, git {str(meta.get('git_revision', '?'))[:12]}") + "</p>")
    if not summary:
        parts.append('<p class="ERROR">No summary.json: the run did not finish (crashed or still '
                     "running); the tables show the results written so far.</p>")
    if best:
        config = ", ".join(f"{k}={_fmt(v)}" for k, v in best.get("config", {}).items())
        parts.append('<h2>Best trial</h2><div class="box">' + html.escape(
            f"{best['trial_id']}: {summary.get('metric')} = {_fmt(best.get('metric'))} at "
            f"iteration {best.get('iteration')}") + f"<br>config: <code>{html.escape(config)}"
            "</code></div>")
    if summary:
        keys = ("wall_s", "startup_s", "compute_s", "slots", "efficiency", "iterations",
                "exploits", "trials", "stop_reason", "engine", "scheduling")
        parts.append("<h2>Run</h2>" + _table(list(keys), [[summary.get(k) for k in keys]], 0))
    header, rows = trial_table(run_dir, summary)
    marks = ["best" if row[0] == best.get("trial_id") else "" for row in rows]
    parts.append("<h2>Trials</h2>" + _table(header, rows, 2, marks))
    titles = {"metric": "Metric per trial", "losses": "Losses per trial",
              "hyperparameters": "Hyperparameter schedules",
              "lineage": "Exploit lineage", "timeline": "Timeline (worker, node)"}
    if images:
        parts.append("<h2>Plots</h2>")
    for name, path in images.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"<h3>{titles.get(name, name)}</h3>"
                     f'<img alt="{name}" src="data:image/png;base64,{data}">')
    parts.extend(_artifact_section(run_dir, str(summary.get("metric", "metric"))))
    decisions = read_decisions(run_dir / "pbt_global.txt")
    parts.append(f"<h2>Exploits ({len(decisions)})</h2>")
    if decisions:
        def short(config: dict[str, Any]) -> str:
            return ", ".join(f"{k}={_fmt(v)}" for k, v in config.items())

        rows = [[d[0], d[1], d[2], d[3], short(d[4]), short(d[5])] for d in decisions]
        parts.append(_table(["target", "donor", "target iter", "donor iter", "donor config",
                             "new config"], rows, 2).replace("<td>", '<td class="l">'))
    errors = summary.get("errors") or {}
    failures = summary.get("failures") or {}
    parts.append(f"<h2>Errors ({len(errors)})</h2>")
    if errors or failures:
        parts.append(_table(["trial", "error", "failures"],
                            [[t, errors.get(t, ""), failures.get(t, 0)]
                             for t in sorted(set(errors) | set(failures))], 2))
    else:
        parts.append("<p>none</p>")
    links = [f'<a href="{name}">{name}</a>' for name in LINKED if (run_dir / name).is_file()]
    parts.append("<h2>Files</h2><p>" + " &middot; ".join(links) + "</p>")
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>pbtune report "
            f"{html.escape(run_dir.name)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _artifact_section(run_dir: Path, metric: str) -> list[str]:
    """Each trial's images at its best iteration (a GAN's samples), from ``plots/``."""
    from pbtune.results.artifacts import read_index

    index = read_index(run_dir)
    parts = []
    for trial_id in sorted(index):
        for name, entry in sorted(index[trial_id].items()):
            path = run_dir / "plots" / str(entry.get("file", ""))
            if not path.is_file():
                continue
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            caption = (f"{trial_id}: {name} at iteration {entry.get('iteration')}, "
                       f"{metric} = {_fmt(entry.get('metric'))}")
            parts.append(f'<figure><img alt="{html.escape(name)} {html.escape(trial_id)}" '
                         f'src="data:image/png;base64,{data}"><figcaption>'
                         f"{html.escape(caption)}</figcaption></figure>")
    return (["<h2>Samples at each trial's best iteration</h2>", *parts]) if parts else []
