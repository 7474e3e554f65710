"""``stdann data``: preview the built-in video or a data source, index a video folder, build a clip cache."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from stdann.cli.common import add_config_args, config_from_args, count
from stdann.data.cache import build_cache
from stdann.data.folder import DataError, index_folder
from stdann.data.preview import preview
from stdann.runs.folder import RunFolder


def _data_config(args):
    """The data section of the configuration from --preset/--config/--set (``cli.common``); the
    command's own flags are applied by the caller."""
    return config_from_args(args).data


def cmd_preview(args) -> int:
    cfg = _data_config(args)
    if args.root:
        cfg = replace(cfg, root=args.root, source=args.source or ("cache" if (Path(args.root) / "index.json").exists() else "folder"))
    elif args.source:
        cfg = replace(cfg, source=args.source)
    folder = RunFolder(args.out)
    with folder.hold():  # written into a staging folder, then moved into place through the folder's manifest
        with folder.ensure_run().staging() as tmp:
            res = preview(cfg, tmp, clips=args.clips, stats_clips=args.stats_clips, device=args.device, seed=args.seed,
                          fmt=args.format, scale=args.scale, augmented=not args.raw)
            folder.publish(tmp)
    res = {k: (folder.root / Path(v).relative_to(tmp) if k in ("animation", "contact_sheet") else v) for k, v in res.items()}
    print(f"wrote {res['animation']} and {res['contact_sheet']} (+ motion_stats.json)")
    m = res.get("motion")
    if m:
        print(f"motion of {m['clips']} clips (0 deg = rightward, 90 deg = upward, counter-clockwise):")
        for a, c in zip(m["direction_bins_deg"], m["direction_counts"]):
            print(f"  direction {a:5.1f} deg ±{180 / len(m['direction_counts']):.1f}: {c}")
        s = m["speed_px_per_frame"]
        print(f"  speed px/frame: min {s['min']:.2f}  p5 {s['p5']:.2f}  median {s['median']:.2f}  p95 {s['p95']:.2f}  max {s['max']:.2f}")
        print(f"  resultant length of directions {m['direction_resultant']:.3f} (0 = balanced)")
    return 0


def cmd_index(args) -> int:
    cfg = _data_config(args)
    if args.split is not None:
        cfg = replace(cfg, split=args.split)
    try:
        idx = index_folder(args.root, cfg, progress=not args.json and not args.quiet)
    except DataError as e:
        if args.json:
            print(json.dumps({"videos": 0, "skipped": [], "error": str(e)}))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        d = idx.to_json()
        if not args.files:
            d.pop("files")
        print(json.dumps(d))
        return 0
    s = idx.summary()
    print(f"{s['videos']} usable videos under {s['root']}; {s['skipped_count']} skipped")
    for reason, n in sorted(s["skipped_by_reason"].items()):
        print(f"  {n:6d} × {reason}")
    if args.verbose:
        for sk in idx.skipped:
            print(f"  skipped {sk['path']}: {sk['reason']}")
    return 0


def cmd_cache(args) -> int:
    cfg = _data_config(args)
    if args.split is not None:
        cfg = replace(cfg, split=args.split)
    if args.windows is not None:
        cfg = replace(cfg, cache_windows=args.windows)
    folder = RunFolder(args.out)
    try:
        with folder.hold():  # one process per cache; every file through the folder's manifest
            if args.overwrite:
                folder.discard()
            folder.check_writable(["cache.json", "index.json"])
            folder.ensure_run()
            s = build_cache(args.root, args.out, cfg, workers=args.workers, progress=not args.quiet,
                            overwrite=args.overwrite, claim=folder.claim)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"cache {args.out}: {s['videos']} videos, {s['windows']} windows of {s['window_frames']}×{s['height']}×{s['width']} "
          f"({s['resumed']} resumed), {len(s['skipped'])} skipped, {s['seconds']} s")
    for sk in s["skipped"][:20]:
        print(f"  skipped {sk['path']}: {sk['reason']}")
    if len(s["skipped"]) > 20:
        print(f"  … {len(s['skipped']) - 20} more in {args.out}/index.json")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data", help="preview, index and cache training video",
        description=(
            "Look at and prepare the video stdann trains on. `preview` writes an MP4/GIF, a contact sheet and the "
            "motion statistics of what the model sees (the built-in generated video, a video folder or a cache); "
            "`index` lists the usable videos of a folder and the reason each other file is skipped (zero-length, "
            "truncated, not a video, frames too small or too large, ...); `cache` decodes a folder once into "
            "memory-mapped clip shards that `--set data.source=cache` trains from."
        ),
        epilog="Examples:\n  stdann data preview --out preview/\n  stdann data index /data/UCF101 -v\n"
               "  stdann data cache /data/UCF101 --out /data/ucf_cache --preset paper",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="{preview,index,cache}")
    sub.required = True

    pv = sub.add_parser("preview", help="write a short MP4/GIF, a contact sheet and the motion statistics of a data source")
    pv.add_argument("--out", default="data_preview", help="output folder (default: data_preview)")
    pv.add_argument("--root", default=None, help="preview a video folder or cache instead of the built-in video")
    pv.add_argument("--source", choices=["generated", "folder", "cache"], default=None, help="data source (default: from the config, or guessed from --root)")
    pv.add_argument("--clips", type=count(1), default=16, help="number of positive pairs shown (default 16)")
    pv.add_argument("--stats-clips", type=count(0), default=512, help="pairs whose ground-truth motion is summarised (default 512)")
    pv.add_argument("--format", choices=["mp4", "gif"], default="mp4", help="animation format (default mp4)")
    pv.add_argument("--scale", type=count(1), default=2, help="pixel magnification of the written images (default 2)")
    pv.add_argument("--raw", action="store_true", help="show generated clips without augmentation (the second view is another clip)")
    pv.add_argument("--device", default="cpu", help="device for generation: cpu, cuda, auto (default cpu)")
    pv.add_argument("--seed", type=count(0), default=0, help="random seed (default 0)")
    add_config_args(pv)
    pv.set_defaults(func=cmd_preview)

    ix = sub.add_parser("index", help="list the usable videos of a folder and why the others are skipped")
    ix.add_argument("root", help="folder tree of video files (mp4, avi, mkv, webm …)")
    ix.add_argument("--split", default=None, help="UCF101 split list to restrict to, e.g. trainlist01")
    ix.add_argument("--json", action="store_true", help="print one JSON object with 'videos' (count) and 'skipped' ([{path, reason}])")
    ix.add_argument("--files", action="store_true", help="with --json, also list every usable file")
    ix.add_argument("--verbose", "-v", action="store_true", help="print every skipped file with its reason")
    ix.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_config_args(ix)
    ix.set_defaults(func=cmd_index)

    ca = sub.add_parser("cache", help="decode a folder once into memory-mapped uint8 clip shards (resumable)")
    ca.add_argument("root", help="folder tree of video files")
    ca.add_argument("--out", required=True, help="cache directory (created; an unfinished cache there is resumed)")
    ca.add_argument("--workers", type=count(1), default=None, help="decoding processes (default: data.workers)")
    ca.add_argument("--windows", type=count(1), default=None, help="windows cached per video (default: data.cache_windows)")
    ca.add_argument("--split", default=None, help="UCF101 split list to restrict to, e.g. trainlist01")
    ca.add_argument("--overwrite", action="store_true", help="discard an existing cache in --out")
    ca.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_config_args(ca)
    ca.set_defaults(func=cmd_cache)
    return p

