"""Write the synthetic shapes data set to disk, to try trtedge without a camera.

    python -m trtedge.datasets video shapes.mp4 [--frames 120] [--size 480x640] [--fps 10] [--seed 7]
    python -m trtedge.datasets images DIR [--count 50] [--size 480x640] [--seed 7]

``video`` writes the frames as a video and their labels beside it
(``shapes.mp4.json``: one entry per frame, COCO-style boxes ``[x, y, w, h]``);
``images`` writes PNG files and ``annotations.json`` (COCO). Needs OpenCV.
"""

import argparse
import json
import sys
from typing import List, Optional, Tuple

from .shapes import CLASSES, generate, to_coco, write_coco


def _size(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("size is HEIGHTxWIDTH, e.g. 480x640")
    if h < 48 or w < 48:
        raise argparse.ArgumentTypeError("size must be at least 48x48")
    return h, w


def write_video(path: str, frames: int = 120, size: Tuple[int, int] = (480, 640), fps: float = 10.0,
                seed: int = 7) -> str:
    """Write ``frames`` shapes frames to ``path`` and labels to ``path + ".json"``; returns the labels' path."""
    import cv2

    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.lower().endswith(".avi") else "mp4v"))
    writer = cv2.VideoWriter(path, fourcc, fps, (size[1], size[0]))
    if not writer.isOpened():
        raise OSError("OpenCV cannot write {}".format(path))
    samples = []
    try:
        for index in range(frames):
            sample = generate(seed, index, size)
            writer.write(sample.image)
            samples.append(sample)
    finally:
        writer.release()
    labels = path + ".json"
    data = to_coco(samples, ["frame {}".format(i) for i in range(frames)], first_image_id=0)
    with open(labels, "w") as f:
        json.dump(data, f)
    return labels


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trtedge.datasets", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    v = sub.add_parser("video", help="a video of shapes frames, labels beside it")
    v.add_argument("path")
    v.add_argument("--frames", type=int, default=120)
    v.add_argument("--fps", type=float, default=10.0)
    i = sub.add_parser("images", help="PNG images and a COCO annotations.json")
    i.add_argument("path")
    i.add_argument("--count", type=int, default=50)
    for p in (v, i):
        p.add_argument("--size", type=_size, default=(480, 640), help="HEIGHTxWIDTH (default 480x640)")
        p.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.stderr.write("trtedge: error: writing images and videos needs OpenCV: pip install \"trtedge[cv]\"\n")
        return 2
    try:
        if args.what == "video":
            labels = write_video(args.path, args.frames, args.size, args.fps, args.seed)
            print("wrote {} ({} frames of {}) and {}".format(args.path, args.frames, "/".join(CLASSES), labels))
        else:
            labels = write_coco(args.path, args.seed, args.count, args.size)
            print("wrote {} images to {} and {}".format(args.count, args.path, labels))
    except OSError as exc:
        sys.stderr.write("trtedge: error: {}\n".format(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
