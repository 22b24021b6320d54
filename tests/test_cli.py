import json

import pytest

from vidloader.cli import main

from media import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("cli") / "a.mp4", frames=24, gop=8)


def test_inspect_prints_index_facts(clip, capsys):
    assert main(["inspect", clip]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 24 and info["keyframes"] == 3 and info["gop_mean"] == 8.0
    assert info["codec"] == "h264" and info["seekable"] is True


def test_index_reports_bad_files_and_vanished(clip, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    gone = tmp_path / "gone.mp4"
    make_video(gone, frames=8, gop=4)
    db = tmp_path / "i.sqlite"
    assert main(["index", str(gone), "--db", str(db), "--quiet"]) == 0
    gone.unlink()
    assert main(["index", clip, str(bad), "--db", str(db), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 indexed, 1 failed" in out
    assert str(bad) in out and "not a media file" in out
    assert "1 indexed file(s) vanished" in out


def test_inspect_missing_file_names_it(tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    assert main(["inspect", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err
