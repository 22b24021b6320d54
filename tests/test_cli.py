import json
import subprocess
import sys

import av
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


# -- errors: one line, exit code 2 ------------------------------------------------------------------


def _one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def test_index_empty_folder_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["index", str(empty), "--db", str(tmp_path / "i.sqlite"), "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, "vidloader: error:", str(empty))


def test_index_unmatched_glob_is_one_line(tmp_path, capsys):
    pattern = str(tmp_path / "nothing" / "*.mp4")
    assert main(["index", pattern, "--db", str(tmp_path / "i.sqlite"), "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, pattern)


def test_index_unusable_db_is_one_line(clip, tmp_path, capsys):
    db = tmp_path / "no" / "such" / "dir" / "i.sqlite"
    (tmp_path / "no").write_text("a file where a folder should be")
    assert main(["index", clip, "--db", str(db), "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, "vidloader: error:")


def test_sample_report_empty_folder_is_one_line(tmp_path, capsys):
    assert main(["sample-report", str(tmp_path), "--no-rho", "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, str(tmp_path))


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["index", "x.mp4", "--limit", "-1"], "--limit"),
        (["index", "x.mp4", "--workers", "0"], "--workers"),
        (["index", "x.mp4", "--workers", "two"], "--workers"),
        (["sample-report", "x.mp4", "--batch-size", "0"], "--batch-size"),
        (["sample-report", "x.mp4", "--sampler", "bogus"], "--sampler"),
        (["index"], "paths"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_bad_options_are_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    _one_line_error(capsys.readouterr().err, needle)


# -- help: fast, without torch ------------------------------------------------------------------------


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from vidloader.cli import main\n"
        "for argv in (['--help'], ['index', '--help'], ['inspect', '--help'], ['sample-report', '--help'],\n"
        "             ['bench', '--help'], ['prepare', '--help'], ['map', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
        "print(sorted(m for m in ('torch', 'av', 'numpy', 'vidloader.loader', 'vidloader.decoding') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout[-500:]


def test_python_m_vidloader_help():
    r = subprocess.run([sys.executable, "-m", "vidloader", "index", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(default: 50)" in " ".join(r.stdout.split())  # the --limit default is shown


def test_package_names_load_on_first_use():
    code = (
        "import sys\n"
        "import vidloader as vl\n"
        "assert 'torch' not in sys.modules\n"
        "assert vl.VideoLoader.__name__ == 'VideoLoader' and 'torch' in sys.modules\n"
        "from vidloader import UniformFrames, sampling_report, RepeatedEpochWarning\n"
        "assert set(vl.__all__) <= set(dir(vl))\n"
        "try:\n"
        "    vl.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


# -- the index table ------------------------------------------------------------------------------------


def _table_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip()]


def test_index_table_tells_files_apart_at_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    root = tmp_path / ("a-rather-long-folder-name-for-camera-recordings-" * 2)
    names = []
    for cam in ("left", "right"):
        for take in ("take_001", "take_002"):
            (root / cam / take).mkdir(parents=True)
            make_video(root / cam / take / "clip.mp4", frames=8, gop=4)
            names.append(f"{cam}/{take}/clip.mp4")
    assert main(["index", str(root), "--db", str(tmp_path / "i.sqlite")]) == 0
    lines = _table_lines(capsys.readouterr().out)
    assert all(len(ln) <= 80 for ln in lines), "\n".join(ln for ln in lines if len(ln) > 80)
    rows = [ln for ln in lines if "clip.mp4" in ln]
    assert len(rows) == 4
    for name in names:  # each file's distinguishing end is shown whole
        assert sum(name in r for r in rows) == 1, (name, rows)


def test_index_table_size_after_rotation_and_codec_name(shared_videos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    rotated = shared_videos / "decord__video_90.mov"
    if not rotated.is_file():
        pytest.skip(f"{rotated} not found")
    assert main(["index", str(rotated), "--db", str(tmp_path / "i.sqlite")]) == 0
    lines = _table_lines(capsys.readouterr().out)
    header = next(ln for ln in lines if ln.split()[:1] == ["file"])
    assert header.split() == ["file", "frames", "HxW", "rot", "fps", "GOP", "codec", "by"]
    row = next(ln for ln in lines if "decord__video_90.mov" in ln).split()
    # MANIFEST.md: coded 568x320 (WxH), rotation 90 -> displayed 568 high, 320 wide
    assert row[2] == "568x320" and row[3] == "90" and row[6] == "h264", row


def _av1_clip(path):
    for enc in ("libsvtav1", "libaom-av1"):
        if enc not in av.codecs_available:
            continue
        opts = {"preset": "12"} if enc == "libsvtav1" else {"cpu-used": "8", "usage": "realtime"}
        return make_video(path, codec=enc, frames=12, gop=6, options=opts)
    pytest.skip("PyAV has no AV1 encoder (libsvtav1 / libaom-av1)")


def test_codec_name_not_decoder_name(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    path = _av1_clip(tmp_path / "v.mkv")
    want = "av1"  # what the file was encoded with
    with av.open(path) as c:
        decoder = c.streams.video[0].codec_context.name  # e.g. libdav1d
    assert main(["inspect", path]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codec"] == want and info["decoder"] == decoder
    assert main(["index", path, "--db", str(tmp_path / "i.sqlite")]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if "v.mkv" in ln).split()
    assert row[6] == want, row
