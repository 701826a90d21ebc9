"""Clip throughput: plan + behaviour synthesis, rendering, temporal labels, shard write/read.

Baselines measured in the same run: rendering the same frames as independent single images with
ProceduralGenerator (so the clip path's overhead shows), and encoding the frames without the tar
writer. Prints one JSON object on its last line.

    .venv/bin/python benchmarks/clips.py [--clips 4] [--seconds 3] [--fps 10] [--size 128]
"""

import argparse
import json
import sys
import tempfile
import time

import torch

torch.set_num_threads(1)

from dmsfactory.clips import ClipGenerator, ClipsConfig, make_clip_plan  # noqa: E402
from dmsfactory.clips.plan import clip_shard_jobs  # noqa: E402
from dmsfactory.clips.shards import frame_windows, open_clip_shards, write_clip_shard  # noqa: E402
from dmsfactory.datasets.shards import encode_image  # noqa: E402
from dmsfactory.generators.procedural import ProceduralGenerator, ProceduralConfig  # noqa: E402
from dmsfactory.labelers.temporal import temporal_labels_from_frames  # noqa: E402
from dmsfactory.spec import parse_spec  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args(argv)
    spec = parse_spec({"name": "bench", "seed": 1, "classes": {"alert": 1},
                       "identities": {"count": a.clips, "images_per_identity": 1}})
    cfg = ClipsConfig(fps=a.fps, duration_s=a.seconds, image_size=a.size)
    t0 = time.perf_counter()
    plans = make_clip_plan(spec, cfg)
    t_plan = time.perf_counter() - t0
    frames = [f for p in plans for f in p["frames"]]
    n = len(frames)

    gen = ProceduralGenerator(ProceduralConfig())
    gen.setup()
    gen.generate(frames[:2])  # warm-up
    t0 = time.perf_counter()
    singles = gen.generate(frames)
    t_single = time.perf_counter() - t0

    cg = ClipGenerator(ProceduralConfig(), cfg)
    cg.setup()
    t0 = time.perf_counter()
    clips = cg.generate(plans)
    t_clip = time.perf_counter() - t0
    bad = [c.key for c in clips if c.quarantined]

    t0 = time.perf_counter()
    for p in plans:
        temporal_labels_from_frames(p["frames"], p["fps"])
    t_temporal = time.perf_counter() - t0

    t0 = time.perf_counter()
    for s in singles:
        encode_image(s.image, "jpg", cfg.jpeg_quality)
    t_enc = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        for name, batch in clip_shard_jobs(plans, cfg.clips_per_shard):
            keys = {p["key"] for p in batch}
            write_clip_shard(d, name, [c for c in clips if c.key in keys], fmt="jpg", quality=cfg.jpeg_quality)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_read = sum(len(it["frames"]) for split in ("train", "val", "test")
                     for it in (open_clip_shards(d, split) if list(__import__("pathlib").Path(d, "clips").glob(f"{split}-*.tar")) else []))
        t_read = time.perf_counter() - t0
        split = plans[0]["split"]
        t0 = time.perf_counter()
        n_win = sum(1 for _ in frame_windows(d, 8, 4, split=split))
        t_win = time.perf_counter() - t0

    res = {
        "frames": n, "clips": len(plans), "size": a.size, "quarantined_clips": len(bad),
        "plan_frames_per_s": round(n / t_plan, 1),
        "single_image_render_frames_per_s": round(n / t_single, 2),
        "clip_render_frames_per_s": round(n / t_clip, 2),
        "clip_vs_single_render_ratio": round(t_single / t_clip, 3),
        "plan_time_vs_render_ratio": round(t_plan / t_clip, 4),
        "temporal_label_time_vs_render_ratio": round(t_temporal / t_clip, 4),
        "shard_write_frames_per_s": round(n / t_write, 1),
        "shard_write_vs_encode_only_ratio": round(t_enc / t_write, 3),
        "shard_read_frames_per_s": round(n_read / t_read, 1),
        "windows": n_win, "window_read_s": round(t_win, 3),
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
