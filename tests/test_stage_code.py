"""The guard that a stage's VERSION is bumped when the code it runs changes (`hoi_cli.stagecode`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hoi_cli.stagecode import check, current, module_digests, source_digest

LOCK = Path(__file__).with_name("stage_code.lock.json")


def test_every_stage_code_change_is_a_version_bump_or_recorded():
    problems = check(json.loads(LOCK.read_text()))
    assert not problems, "\n".join(problems)


def test_a_helper_change_without_a_version_bump_is_caught():
    now = current()
    lock = copy.deepcopy(now)
    lock["03_segment"]["modules"]["hoi_cli.segment.grabcut"] = "0" * 16  # the helper changed since the lock
    problems = check(lock, now)
    assert len(problems) == 1
    assert problems[0].startswith("03_segment: code changed at VERSION") and "hoi_cli.segment.grabcut" in problems[0]
    lock["03_segment"]["version"] = "0"  # ...with a bump: the lock only needs the new version recorded
    assert check(lock, now) == [f"03_segment: VERSION 0 -> {now['03_segment']['version']}: "
                                "record the new version with --write"]
    del lock["03_segment"]
    assert check(lock, now)[0].startswith("03_segment: not in the lock")


def test_a_stage_covers_its_lazily_imported_helpers_but_not_other_stages():
    mods = module_digests("hoi_cli.stages.segment")
    assert "hoi_cli.segment.grabcut" in mods  # imported inside a function
    assert "hoi_cli.stages.detect" not in mods  # an upstream stage: data, not code
    assert "hoi_cli.detect.objects" in module_digests("hoi_cli.stages.detect")


def test_comments_and_docstrings_do_not_count_but_code_does():
    a = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    b = 'def f(x):\n    """Another doc."""\n\n    return x + 1  # another comment\n'
    c = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert source_digest(a) == source_digest(b)
    assert source_digest(a) != source_digest(c)
