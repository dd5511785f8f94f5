"""``trtedge eval ENGINE``: COCO mAP@0.5 and mAP@0.5:0.95 of an engine, with pycocotools.

    trtedge eval build/shapes_yolo/shapes_yolo_int8.bin --data annotations.json --images val/
    trtedge eval build/shapes_yolo/shapes_yolo_int8.bin --shapes 200

Frames go through the same :class:`trtedge.Detector` users run (TensorRT
where it can run, ONNX Runtime on the engine ONNX otherwise; ``--backend``
chooses), so what is measured is what ``detect`` would report. ``--data`` is
a COCO detection file (``images``, ``annotations``, ``categories``); the
engine's labels are matched to its categories by name. ``--shapes N``
generates N frames of the synthetic shapes data set (square and letterboxed
sizes) with their labels instead. Detections are scored at the engine's
built threshold unless ``--conf`` says otherwise (for the ``host`` NMS form a
lower ``--conf`` gives the usual low-threshold COCO numbers).

Importing this module loads neither numpy nor onnx.
"""

import argparse
import contextlib
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import TrtedgeError
from .utils.console import say as _say

#: seed and frame sizes of ``--shapes`` (a seed no built-in detector was trained on)
SHAPES_SEED = 4242
SHAPES_SIZES = ((256, 256), (480, 640), (360, 640), (400, 300))




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("engine", help="engine file built by trtedge (manifest and engine ONNX beside it)")
    p.add_argument("--data", metavar="ANNOTATIONS", help="COCO annotation file (instances_*.json)")
    p.add_argument("--images", metavar="DIR", help="directory of the annotation file's images")
    p.add_argument("--shapes", type=int, metavar="N", help="evaluate on N generated shapes frames instead")
    p.add_argument("--seed", type=int, default=SHAPES_SEED, help="seed of the --shapes frames")
    p.add_argument("--backend", default="auto", choices=("auto", "trt", "onnxrt"))
    p.add_argument("--conf", type=float, metavar="X", help="score threshold (default: the engine's)")
    p.add_argument("--max-images", type=int, metavar="N", help="evaluate the first N images only")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def require_pycocotools() -> Tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise TrtedgeError("trtedge eval needs pycocotools: pip install \"trtedge[eval]\"")
    return COCO, COCOeval


def coco_map(ground_truth: Dict[str, Any], results: Sequence[Dict[str, Any]],
             image_ids: Optional[Sequence[int]] = None) -> Dict[str, float]:
    """``{"map": mAP@0.5:0.95, "map50": mAP@0.5}`` of COCO ``results`` against ``ground_truth`` (pycocotools)."""
    COCO, COCOeval = require_pycocotools()
    gt = COCO()
    gt.dataset = ground_truth
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # pycocotools prints its tables
        gt.createIndex()
        if not results:
            return {"map": 0.0, "map50": 0.0}
        dt = gt.loadRes(list(results))
        ev = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": max(0.0, float(ev.stats[0])), "map50": max(0.0, float(ev.stats[1]))}


def _normalised(coco: Dict[str, Any], origin: str) -> Dict[str, Any]:
    """A COCO dict pycocotools accepts: every annotation with ``id``, ``area`` and ``iscrowd``."""
    try:
        images = list(coco["images"])
        categories = list(coco["categories"])
        anns = [dict(a) for a in coco.get("annotations", [])]
    except (KeyError, TypeError):
        raise TrtedgeError("{} is not a COCO detection file (it needs images, annotations and categories)".format(
            origin))
    for k, a in enumerate(anns):
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            a.setdefault("id", k + 1)
            a.setdefault("area", w * h)
            a.setdefault("iscrowd", 0)
            int(a["image_id"]), int(a["category_id"])
        except (KeyError, TypeError, ValueError):
            raise TrtedgeError("{}: annotation {} has no usable bbox, image_id and category_id".format(origin, k))
    return {"info": coco.get("info", {}), "images": images, "annotations": anns, "categories": categories}


def category_map(labels: Sequence[str], categories: Sequence[Dict[str, Any]], say: Callable[[str], None]) -> List[int]:
    """The COCO category id of each engine class (-1: no such category), matched by name."""
    by_name = {str(c["name"]).strip().lower(): int(c["id"]) for c in categories}
    ids = [by_name.get(str(label).strip().lower(), -1) for label in labels]
    if any(i >= 0 for i in ids):
        missing = [label for label, i in zip(labels, ids) if i < 0]
        if missing:
            say("Note: {} of the engine's labels are no category of the annotations ({}{})".format(
                len(missing), ", ".join(missing[:5]), " ..." if len(missing) > 5 else ""))
        return ids
    if len(categories) == len(labels):
        say("Note: no label matches a category name; classes are mapped to the categories in id order")
        return sorted(int(c["id"]) for c in categories)
    raise TrtedgeError("none of the engine's labels ({}) is a category of the annotations ({})".format(
        ", ".join(list(labels)[:5]), ", ".join(str(c["name"]) for c in list(categories)[:5])))


def to_results(image_id: int, det: Any, cat_ids: Sequence[int]) -> List[Dict[str, Any]]:
    """COCO result rows (``bbox`` x, y, w, h) of one frame's :class:`Detections`."""
    rows = []
    for box, score, cls in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist()):
        cat = cat_ids[cls] if 0 <= cls < len(cat_ids) else -1
        if cat < 0:
            continue
        x1, y1, x2, y2 = box
        rows.append({"image_id": int(image_id), "category_id": int(cat),
                     "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                     "score": round(float(score), 6)})
    return rows


def _file_frames(coco: Dict[str, Any], images_dir: str, limit: Optional[int],
                 say: Callable[[str], None]) -> Iterator[Tuple[int, Any]]:
    import cv2

    missing = 0
    count = 0
    for im in coco["images"]:
        if limit is not None and count >= limit:
            break
        path = os.path.join(images_dir, str(im["file_name"]))
        frame = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
        if frame is None:
            missing += 1
            continue
        count += 1
        yield int(im["id"]), frame
    if missing:
        say("Note: {} image(s) of the annotations are missing or unreadable in {}".format(missing, images_dir))


def shapes_set(count: int, seed: int = SHAPES_SEED) -> Tuple[Dict[str, Any], List[Any]]:
    """(COCO ground truth, frames) of ``count`` generated shapes frames."""
    from .datasets.shapes import generate, to_coco

    samples = [generate(seed, i, SHAPES_SIZES[i % len(SHAPES_SIZES)]) for i in range(count)]
    coco = to_coco(samples, ["shapes_{:06d}.png".format(i) for i in range(count)])
    return coco, [s.image for s in samples]


def evaluate(engine: str, data: Optional[str] = None, images: Optional[str] = None, shapes: Optional[int] = None,
             seed: int = SHAPES_SEED, backend: str = "auto", conf: Optional[float] = None,
             max_images: Optional[int] = None, say: Callable[[str], None] = _say) -> Dict[str, Any]:
    """COCO mAP of ``engine`` through :class:`trtedge.Detector`; see the module docstring."""
    if (shapes is None) == (data is None):
        raise TrtedgeError("give either --data ANNOTATIONS --images DIR or --shapes N")
    if data is not None and not images:
        raise TrtedgeError("--data needs --images DIR (where the annotation file's images are)")
    if shapes is not None and shapes < 1:
        raise TrtedgeError("--shapes must be at least 1")
    if max_images is not None and max_images < 1:
        raise TrtedgeError("--max-images must be at least 1")
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise TrtedgeError("--conf must be between 0 and 1, is {}".format(conf))
    require_pycocotools()
    if data is not None:
        if not os.path.isfile(data):
            raise TrtedgeError("annotation file {} does not exist".format(data))
        if not os.path.isdir(str(images)):
            raise TrtedgeError("image directory {} does not exist".format(images))
        try:
            with open(data, encoding="utf-8") as f:
                coco = _normalised(json.load(f), data)
        except ValueError as exc:
            raise TrtedgeError("{} is not JSON: {}".format(data, " ".join(str(exc).split())[:120]))
        frames = _file_frames(coco, str(images), max_images, say)  # type: Any
        source = "{} ({})".format(data, images)
    else:
        coco, imgs = shapes_set(int(shapes or 0), seed)
        coco = _normalised(coco, "shapes")
        frames = ((k + 1, im) for k, im in enumerate(imgs[:max_images] if max_images else imgs))
        source = "{} generated shapes frames (seed {})".format(shapes, seed)
    from .runtime.detector import Detector

    results = []  # type: List[Dict[str, Any]]
    seen = []  # type: List[int]
    with Detector(engine, backend=backend, conf=conf, say=say) as det:
        cat_ids = category_map(det.labels, coco["categories"], say)
        batch = []  # type: List[Tuple[int, Any]]
        for item in frames:
            batch.append(item)
            if len(batch) == det.max_batch:
                for (image_id, _), d in zip(batch, det.detect([f for _, f in batch])):
                    results.extend(to_results(image_id, d, cat_ids))
                    seen.append(image_id)
                batch = []
        if batch:
            for (image_id, _), d in zip(batch, det.detect([f for _, f in batch])):
                results.extend(to_results(image_id, d, cat_ids))
                seen.append(image_id)
        name = det.backend_name
    if not seen:
        raise TrtedgeError("no image of {} could be read".format(source))
    scores = coco_map(coco, results, seen)
    return {"engine": engine, "backend": name, "source": source, "images": len(seen), "detections": len(results),
            "map50": round(scores["map50"], 4), "map": round(scores["map"], 4)}


def format_result(r: Dict[str, Any]) -> str:
    rows = [("engine", r["engine"]), ("backend", r["backend"]), ("data", r["source"]), ("images", r["images"]),
            ("detections", r["detections"]), ("mAP@0.5", "{:.4f}".format(r["map50"])),
            ("mAP@0.5:0.95", "{:.4f}".format(r["map"]))]
    width = max(len(k) for k, _ in rows)
    return "\n".join("{}  {}".format(k.ljust(width), v) for k, v in rows)


def run(args: argparse.Namespace) -> int:
    result = evaluate(args.engine, data=args.data, images=args.images, shapes=args.shapes, seed=args.seed,
                      backend=args.backend, conf=args.conf, max_images=args.max_images,
                      say=(lambda m: None) if args.json else _say)
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


COMMAND = (add_arguments, run, "COCO mAP@0.5 and mAP@0.5:0.95 of an engine (pycocotools), through the Detector")
