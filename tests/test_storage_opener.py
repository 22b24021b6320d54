"""``vidloader.storage.register_opener``: readers of a URL get the registered file, and
removing it brings back the store's own file; a URL needs no server while an opener
serves it."""

import io

import av
import numpy as np

from vidloader.storage import RemoteFile, open_remote, register_opener

from media import make_video


def test_registered_opener_serves_the_url(tmp_path):
    path = make_video(tmp_path / "a.mp4", frames=12, gop=6, bframes=0, seed=1)
    data = open(path, "rb").read()
    url = "s3://no-such-bucket/a.mp4"
    opened = []

    def opener():
        opened.append(io.BytesIO(data))
        return opened[-1]

    register_opener(url, opener)
    try:
        f = open_remote(url, size=len(data), etag=None)
        assert f is opened[-1]
        with av.open(f) as c:  # decodes as the local file does
            got = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
        with av.open(path) as c:
            ref = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
        assert len(got) == len(ref) == 12 and all(np.array_equal(a, b) for a, b in zip(got, ref))
        assert open_remote(url, size=len(data), etag=None) is not f  # a new file per open
    finally:
        register_opener(url, None)
    assert isinstance(open_remote(url, size=len(data), etag=None), RemoteFile)  # no read happens until used
