"""`stdann data preview | index | cache` through an argparse parser built here (as main.py will)."""

import argparse
import json

import pytest

from stdann_data_videos import encode_video
from stdann.cli import data as cli_data


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="stdann")
    cli_data.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr()


def test_every_option_has_help():
    parser = argparse.ArgumentParser(prog="stdann")
    p = cli_data.register(parser.add_subparsers(dest="command"))
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"preview", "index", "cache"}
    for sp in sub.choices.values():
        for a in sp._actions:
            if not isinstance(a, argparse._HelpAction):
                assert a.help, (sp.prog, a.dest)


@pytest.mark.video
def test_index_json_and_cache(tmp_path, capsys):
    root = tmp_path / "v"
    root.mkdir()
    encode_video(root / "a.mp4", frames=30)
    encode_video(root / "b.avi", frames=30, codec="mpeg4")
    (root / "c.mp4").write_bytes(b"")
    rc, out = _run(["data", "index", str(root), "--json", "--preset", "smoke"], capsys)
    d = json.loads(out.out)
    assert rc == 0 and d["videos"] == 2 and d["skipped"] == [{"path": str(root / "c.mp4"), "reason": "zero-length file"}]
    rc, out = _run(["data", "index", str(tmp_path / "missing"), "--json"], capsys)
    assert rc == 2 and json.loads(out.out)["videos"] == 0
    rc, out = _run(["data", "cache", str(root), "--out", str(tmp_path / "cache"), "--preset", "smoke", "--workers", "1", "-q"], capsys)
    assert rc == 0 and "2 videos" in out.out
    assert (tmp_path / "cache" / "index.json").exists()


def test_preview_writes_files(tmp_path, capsys):
    rc, out = _run(["data", "preview", "--out", str(tmp_path / "p"), "--preset", "smoke", "--clips", "4", "--stats-clips", "64", "--format", "gif"], capsys)
    assert rc == 0
    assert (tmp_path / "p" / "preview.gif").stat().st_size > 0 and (tmp_path / "p" / "contact_sheet.png").stat().st_size > 0
    stats = json.loads((tmp_path / "p" / "motion_stats.json").read_text())["motion"]
    assert stats["clips"] == 128 and len(stats["direction_counts"]) == 8 and min(stats["direction_counts"]) > 0
    assert "upward" in out.out
