"""A judge/teacher cache (append-only jsonl) damaged by a kill or a full disk: the damaged lines
are skipped and counted in one log line, the rest is served, and appends go on cleanly."""

from __future__ import annotations


from fnsft.actors.call_cache import CallCache


def test_damaged_lines_are_skipped_counted_and_reported(tmp_path, fnsft_log):
    path = tmp_path / "judge_cache.jsonl"
    c = CallCache(str(path))
    for i in range(3):
        c.put(f"k{i}", {"score": i})
    c.close()
    with open(path, "ab") as f:
        f.write(b'{"key": "k1", "value": \xff\n')  # garbage in the middle (bad bytes)
        f.write(b'["not", "a", "row"]\n')
        f.write(b'{"key": "k9", "val')  # the last write, cut short by a kill
    again = CallCache(str(path))
    assert again.dropped_lines == 3 and len(again) == 3 and again.get("k2") == {"score": 2}
    lines = [r.getMessage() for r in {id(r): r for r in fnsft_log.records}.values() if str(path) in r.getMessage()]
    assert len(lines) == 1 and "3 damaged line" in lines[0], fnsft_log.text
    again.put("k9", {"score": 9})
    again.close()
    assert CallCache(str(path)).get("k9") == {"score": 9}
