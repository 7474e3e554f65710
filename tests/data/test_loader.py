"""The training contract of build_pair_source, for the generated, folder and cache sources."""

import numpy as np
import pytest
import torch

from stdann_data_videos import encode_video
from stdann.data.cache import CacheStore, build_cache
from stdann.data.config import DataConfig
from stdann.data.folder import DataError, torchcodec_problem
from stdann.data import loader
from stdann.data.loader import VideoPairSource, build_pair_source


def _hist(x):
    """Luminance histogram of each clip (B, 32)."""
    y = x.mean(1).flatten(1)
    return torch.stack([torch.histc(r, bins=32, min=0, max=1) / r.numel() for r in y])


def _positives_closer(x1, x2):
    h1, h2 = _hist(x1), _hist(x2)
    d = torch.cdist(h1, h2, p=1)
    pos = d.diagonal().mean()
    neg = (d.sum() - d.diagonal().sum()) / (d.numel() - d.shape[0])
    return float(pos), float(neg)


def test_generated_contract():
    cfg = DataConfig(frames=4, size=24, num_scenes=16)
    src = build_pair_source(cfg, 6, "cpu", seed=3)
    x1, x2 = src.batch(0)
    for x in (x1, x2):
        assert x.shape == (6, 3, 4, 24, 24) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert float(x.min()) >= 0 and float(x.max()) <= 1
    a1, a2 = src.batch(0)
    assert torch.equal(x1, a1) and torch.equal(x2, a2)
    b1, _ = src.batch(1)
    assert not torch.allclose(x1, b1)
    other_rank = build_pair_source(cfg, 6, "cpu", seed=3, rank=1, world_size=2)
    assert not torch.allclose(other_rank.batch(0)[0], x1)
    assert torch.equal(build_pair_source(cfg, 6, "cpu", seed=3).batch(0)[0], x1)  # a new process resumes identically
    assert not torch.allclose(build_pair_source(cfg, 6, "cpu", seed=4).batch(0)[0], x1)
    st = src.stats()
    assert st["source"] == "generated" and st["scenes"] == 16
    x1, x2, m1, m2 = src.batch(5, return_motion=True)
    assert m1["direction"].shape == (6,) and m2["speed"].shape == (6,)


def test_generated_positives_more_similar():
    cfg = DataConfig(frames=4, size=32, num_scenes=32, augment=False, objects_max=0)
    x1, x2 = build_pair_source(cfg, 24, "cpu", seed=0).batch(0)
    pos, neg = _positives_closer(x1, x2)
    assert pos < 0.6 * neg


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vids")
    for i in range(4):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        encode_video(root / f"c{i % 2}" / f"v{i}.mp4", frames=40, seed=i)
    (root / "c0" / "broken.mp4").write_bytes(b"garbage" * 30)
    return root


@pytest.mark.video
@pytest.mark.parametrize("kind", ["folder", "cache", "torchcodec", "processes"])
def test_video_sources_contract(video_root, tmp_path, kind):
    cfg = DataConfig(source="folder", root=str(video_root), frames=4, size=24, frame_stride=2, pair_max_gap=0.4, workers=2, prefetch=2)
    if kind == "torchcodec":
        if torchcodec_problem():
            pytest.skip(f"torchcodec cannot be used here: {torchcodec_problem()}")
        cfg = DataConfig(**{**cfg.__dict__, "decoder": "torchcodec"})
    if kind == "processes":
        cfg = DataConfig(**{**cfg.__dict__, "worker_type": "process"})
    if kind == "cache":
        s = build_cache(video_root, tmp_path / "cache", cfg, workers=2, progress=False)
        assert s["videos"] == 4 and len(s["skipped"]) == 1
        cfg = DataConfig(**{**cfg.__dict__, "source": "cache", "root": str(tmp_path / "cache")})
    src = build_pair_source(cfg, 5, "cpu", seed=1)
    x1, x2 = src.batch(7)
    assert x1.shape == x2.shape == (5, 3, 4, 24, 24) and x1.dtype == torch.float32
    assert float(x1.min()) >= 0 and float(x1.max()) <= 1
    for step in (8, 9, 7):
        src.batch(step)
    y1, y2 = src.batch(7)
    assert torch.equal(x1, y1) and torch.equal(x2, y2)
    noprefetch = build_pair_source(DataConfig(**{**cfg.__dict__, "prefetch": 0}), 5, "cpu", seed=1)
    assert torch.equal(noprefetch.batch(7)[0], x1)
    st = src.stats()
    assert st["videos"] == 4 and len(st["skipped"]) == 1 and st["skipped"][0]["path"].endswith("broken.mp4")
    assert st["decoder"] == {"cache": None, "torchcodec": "torchcodec"}.get(kind, "pyav")
    src.close()


@pytest.mark.video
def test_cache_matches_folder_decoding(video_root, tmp_path):
    cfg = DataConfig(frames=4, size=24, pair_max_gap=0.2, cache_windows=2)
    build_cache(video_root, tmp_path / "c", cfg, workers=1, progress=False)
    store = CacheStore(tmp_path / "c")
    assert len(store) == 8 and store.window_frames == 4 + 5
    from stdann.data.folder import index_folder, decode_frames

    idx = {v.rel: v for v in index_folder(video_root, cfg).videos}
    w = store.windows[1]
    ref = decode_frames(idx[w["rel"]], w["start"], 9, cfg.resize_hw())
    assert np.array_equal(store.read(1, 0, 9), ref)


@pytest.mark.video
def test_cache_resumes_and_survives_dead_worker(video_root, tmp_path, monkeypatch):
    cfg = DataConfig(frames=4, size=24, pair_max_gap=0.2, cache_windows=1)
    out = tmp_path / "c"
    monkeypatch.setenv("STDANN_DATA_TEST_CRASH", "v2.mp4")  # the process decoding v2 exits
    s = build_cache(video_root, out, cfg, workers=2, progress=False)
    assert s["videos"] == 3
    reasons = {p["path"].rsplit("/", 1)[-1]: p["reason"] for p in s["skipped"]}
    assert reasons["v2.mp4"] == "decoder process died" and "broken.mp4" in reasons
    monkeypatch.delenv("STDANN_DATA_TEST_CRASH")
    s = build_cache(video_root, out, cfg, workers=2, progress=False)
    assert s["videos"] == 4 and s["resumed"] == 3
    with pytest.raises(DataError, match="other settings"):
        build_cache(video_root, out, DataConfig(frames=8, size=24), progress=False)
    # a record cut short (a kill during an older, non-atomic write): that video is encoded again
    record = sorted((out / "shards").glob("*.json"))[0]
    record.write_text(record.read_text()[:10])
    s = build_cache(video_root, out, cfg, workers=1, progress=False)
    assert s["videos"] == 4 and s["resumed"] == 3
    assert CacheStore(out).videos == 4
    (out / "index.json").write_text("{")  # a damaged index is one line naming it and the fix
    with pytest.raises(DataError, match=r"cannot read .*index\.json .*damaged; build the cache again"):
        CacheStore(out)
    # --overwrite removes the cache's own shards, not a user's files put beside them
    mine = {out / "shards" / "notes.txt": b"mine", out / "shards" / "keep" / "a.npy": b"x"}
    for p, data in mine.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    s = build_cache(video_root, out, cfg, workers=1, progress=False, overwrite=True)
    assert s["videos"] == 4 and s["resumed"] == 0
    assert all(p.read_bytes() == data for p, data in mine.items())
    (out / "cache.json").write_bytes(b"\x00\xff")
    with pytest.raises(DataError, match=r"cache\.json .*damaged; use another --out, or --overwrite"):
        build_cache(video_root, out, cfg, progress=False)


class _FlakyStore:
    """Items of random frames; reads in a background thread die once with SystemExit."""

    def __init__(self):
        import threading

        self.main = threading.get_ident()
        self.died = False
        self.skipped = []
        self.videos = 3

    def __len__(self):
        return 3

    def length(self, i):
        return 30

    def fps(self, i):
        return 25.0

    def name(self, i):
        return f"item{i}"

    def read(self, i, start, count):
        import threading

        if threading.get_ident() != self.main and not self.died:
            self.died = True
            raise SystemExit("worker died")
        if i == 2:
            raise RuntimeError("corrupt item")
        rng = np.random.default_rng(i)
        return rng.integers(0, 255, (30, 12, 16, 3), dtype=np.uint8)[start : start + count]


def test_dead_worker_does_not_hang_and_bad_items_are_replaced():
    cfg = DataConfig(source="folder", frames=3, size=8, pair_max_gap=0.2, workers=1, prefetch=1)
    store = _FlakyStore()
    src = VideoPairSource(cfg, 4, "cpu", seed=0, store=store)
    x1, _ = src.batch(0)
    ref = VideoPairSource(DataConfig(**{**cfg.__dict__, "prefetch": 0}), 4, "cpu", seed=0, store=_FlakyStore()).batch(0)[0]
    assert store.died and src.stats()["worker_errors"] == 1
    assert torch.equal(x1, ref)
    src.batch(1)
    src.batch(2)
    assert all(f["item"] == "item2" for f in src.stats()["failed"])
    src.close()


def test_unknown_source_refused():
    with pytest.raises(DataError, match="source"):
        build_pair_source(DataConfig(source="webcam"), 2, "cpu", 0)


@pytest.mark.video
def test_training_on_a_folder_reports_the_skipped_files(video_root, capsys, monkeypatch):
    """`train` on a video folder says which files it skipped, once per process."""
    monkeypatch.setattr(loader, "_REPORTED", set())  # (other tests of this process used the same folder)
    cfg = DataConfig(source="folder", root=str(video_root), frames=4, size=24, pair_max_gap=0.4, workers=1, prefetch=0)
    src = build_pair_source(cfg, 2, "cpu", seed=3)
    again = build_pair_source(cfg, 2, "cpu", seed=4)  # the held-out check's source: reported once, not twice
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "[stdann] data:" in line]
    assert len(lines) == 1, err
    assert "4 usable videos" in lines[0] and "1 file(s) skipped" in lines[0] and "stdann data index" in lines[0]
    src.close()
    again.close()


@pytest.mark.video
def test_a_folder_is_indexed_once_per_process_and_again_when_it_changes(video_root, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "vids"
    shutil.copytree(video_root, root)
    calls = []
    real = loader.index_folder
    monkeypatch.setattr(loader, "index_folder", lambda r, c, **k: calls.append(r) or real(r, c, **k))
    cfg = DataConfig(source="folder", root=str(root), frames=4, size=24, frame_stride=2, pair_max_gap=0.4, prefetch=0)
    a = build_pair_source(cfg, 4, "cpu", seed=1)
    b = build_pair_source(cfg, 8, "cpu", seed=2)  # e.g. the held-out pairs of the same run
    assert len(calls) == 1 and b.stats()["videos"] == a.stats()["videos"] == 4
    encode_video(root / "c1" / "new.mp4", frames=40, seed=9)  # the folder changed: indexed again
    assert build_pair_source(cfg, 4, "cpu", seed=1).stats()["videos"] == 5 and len(calls) == 2
    (root / "c1" / "new.mp4").write_bytes(b"now broken" * 20)
    assert build_pair_source(cfg, 4, "cpu", seed=1).stats()["videos"] == 4 and len(calls) == 3


def _shared_index_worker(rank, port, q, root):
    from test_distributed_training import _join

    _join(rank, port)
    if rank == 1:  # only the main process may probe the videos
        loader.index_folder = lambda *a, **k: (_ for _ in ()).throw(AssertionError("rank 1 probed the folder"))
    cfg = DataConfig(source="folder", root=root, frames=4, size=24, frame_stride=2, pair_max_gap=0.4, prefetch=0)
    try:
        src = build_pair_source(cfg, 4, "cpu", seed=1, rank=rank, world_size=2)
        q.put((rank, (src.stats()["videos"], len(src.stats()["skipped"]))))
    except Exception as e:  # noqa: BLE001 - the test compares what each rank saw
        q.put((rank, repr(e)))


@pytest.mark.video
@pytest.mark.heavy
def test_under_torchrun_the_main_process_indexes_the_folder_for_every_rank(video_root):
    from test_distributed_training import _spawn

    r = _spawn(_shared_index_worker, str(video_root), timeout=300)
    assert r[0] == r[1] == (4, 1)


class _DyingStore(_FlakyStore):
    """The first read in a process other than the test's exits that process (a worker killed by
    the OOM killer, say); item 2 never decodes."""

    def __init__(self, marker):
        import os

        super().__init__()
        self.parent, self.marker = os.getpid(), str(marker)

    def read(self, i, start, count):
        import os

        if os.getpid() != self.parent and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(3)
        if i == 2:
            raise RuntimeError("corrupt item")
        rng = np.random.default_rng(i)
        return rng.integers(0, 255, (30, 12, 16, 3), dtype=np.uint8)[start : start + count]


def test_worker_processes_give_the_same_batches_and_survive_a_dead_worker(tmp_path):
    # one worker: it dies while this process waits for its step (PyTorch reports a worker death at
    # any other moment from its SIGCHLD handler, wherever the main process is)
    cfg = DataConfig(source="folder", frames=3, size=8, pair_max_gap=0.2, workers=1, prefetch=3, worker_type="process")
    inline = VideoPairSource(DataConfig(**{**cfg.__dict__, "prefetch": 0}), 4, "cpu", seed=0, store=_DyingStore(tmp_path / "m0"))
    src = VideoPairSource(cfg, 4, "cpu", seed=0, store=_DyingStore(tmp_path / "died"))
    for step in (0, 1, 2, 5, 6, 1):  # in order, a jump ahead, a jump back
        x1, x2 = src.batch(step)
        y1, y2 = inline.batch(step)
        assert torch.equal(x1, y1) and torch.equal(x2, y2), step
    st = src.stats()
    assert (tmp_path / "died").exists() and st["worker_errors"] == 1
    assert st["failed"] == inline.stats()["failed"] and st["failed"] and all(f["item"] == "item2" for f in st["failed"])
    src.close()
    two = VideoPairSource(DataConfig(**{**cfg.__dict__, "workers": 2}), 4, "cpu", seed=0, store=_DyingStore(tmp_path / "died"))
    for step in (3, 4, 5, 9, 0):  # two workers take turns; steps come back in order
        assert torch.equal(two.batch(step)[0], inline.batch(step)[0]), step
    assert two.stats()["worker_errors"] == 0
    two.close()


@pytest.mark.video
def test_cache_reads_only_the_frames_a_pair_uses(video_root, tmp_path, monkeypatch):
    cfg = DataConfig(frames=4, size=24, frame_stride=2, pair_max_gap=0.2, cache_windows=2)
    build_cache(video_root, tmp_path / "c", cfg, workers=1, progress=False)
    store = CacheStore(tmp_path / "c")
    used = np.array([0, 2, 3, 5, 6])
    assert np.array_equal(store.read_frames(1, used), store.read(1, 0, 7)[used])
    calls = []
    real = store.read_frames
    monkeypatch.setattr(store, "read_frames", lambda i, f: calls.append(len(f)) or real(i, f))
    reader = loader.StepReader(cfg, store, batch_size=6, seed=0, rank=0)
    x, failed = reader.cpu_batch(3)
    assert x.shape == (6, 2, 4, *cfg.resize_hw(), 3) and not failed
    span = loader.clip_span(cfg)
    assert len(calls) == 6 and all(4 <= n <= 8 for n in calls) and min(calls) < span + 1  # never the whole window
