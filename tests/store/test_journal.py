"""The journal survives a driver killed in the middle of an append (issue 14 item 3)."""

from __future__ import annotations

import pytest

from pbtune.errors import UserError
from pbtune.store.journal import JOURNAL_NAME, Journal, cut_torn_tail, read_journal


def written(tmp_path, events: int = 3) -> Journal:
    journal = Journal(tmp_path, {"pbtune": "test"})
    for i in range(events):
        journal.write({"event": "result", "n": i})
    journal.close()
    return journal


@pytest.mark.parametrize("torn", ['{"event": "res', '{', '{"event": "result", "n": 9}'])
def test_reopening_cuts_a_torn_last_line_so_later_appends_stay_readable(tmp_path, torn):
    written(tmp_path)
    path = tmp_path / JOURNAL_NAME
    with path.open("a") as f:
        f.write(torn)  # SIGKILL during an append: no newline
    for resume in range(2):  # two resumes in a row, each appending its own event
        journal = Journal(tmp_path)
        journal.write({"event": "resume", "n": resume})
        journal.close()
    _header, events = read_journal(tmp_path)
    assert [e["event"] for e in events] == ["result"] * 3 + ["resume", "resume"]


def test_a_complete_journal_is_left_alone(tmp_path):
    written(tmp_path)
    path = tmp_path / JOURNAL_NAME
    before = path.read_bytes()
    assert cut_torn_tail(path) is False and path.read_bytes() == before


def test_garbage_in_the_middle_is_still_refused(tmp_path):
    written(tmp_path)
    path = tmp_path / JOURNAL_NAME
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines[:2], "not json\n", *lines[2:]]))
    with pytest.raises(UserError, match="line 3 is not valid JSON"):
        read_journal(tmp_path)
