from pathlib import Path

import pytest

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's index cache from tests."""
    monkeypatch.setenv("VIDLOADER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vidloader-cache"))


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"real test videos not found at {SHARED_VIDEOS} (they live beside the repository, not in it)")
    return SHARED_VIDEOS
