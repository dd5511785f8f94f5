"""``trtedge compare A B``: do two engines (or engine ONNX, or models) give the same answers?

    trtedge compare build/m/m_fp32.bin build/m/m_int8.bin      # detectors: detections matched
    trtedge compare model.onnx model_simplified.onnx           # plain models: raw tensors

A and B may each be an engine file built by trtedge (its manifest beside it:
run by the backend ``--backend`` picks, TensorRT where it can run, ONNX
Runtime on its engine ONNX otherwise), an engine ONNX made by trtedge (run in
ONNX Runtime; its resolved spec is in its metadata), or a plain ONNX model.

* Two detectors see the same frames (``--images DIR`` or ``--shapes N``
  generated frames), each fitted into its own input as the runtime does; their
  detections, in frame pixels, are matched per frame by class and IoU
  (greedy, best IoU first, at least ``--iou``). A detection without a partner
  is a mismatch unless it scores within ``--score-tol`` of the other side's
  score threshold (borderline: it may have just missed the cut there); a
  matched pair whose scores differ by more than ``--score-tol`` is a mismatch.
* Anything else is compared tensor by tensor on the same inputs (generated
  frames for a uint8 image input, seeded random data otherwise), output by
  output: same shape, and ``|a - b| <= atol + rtol * |b|`` everywhere.

One table; exit 0 when everything matches, 1 on any mismatch.
Importing this module loads neither numpy nor onnx.
"""

import argparse
import json
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import TrtedgeError
from .utils.console import say as _say

ENGINE_EXTS = (".bin", ".engine", ".plan", ".trt")




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="engine file, engine ONNX or ONNX model")
    p.add_argument("b", metavar="B", help="engine file, engine ONNX or ONNX model")
    p.add_argument("--images", metavar="DIR", help="frames to compare detectors on (default: generated frames)")
    p.add_argument("--shapes", type=int, default=16, metavar="N", help="generated shapes frames (default 16)")
    p.add_argument("--backend", default="auto", choices=("auto", "trt", "onnxrt"), help="for engine files")
    p.add_argument("--iou", type=float, default=0.5, help="least IoU of a matched detection pair (default 0.5)")
    p.add_argument("--score-tol", type=float, default=0.05, help="score tolerance (default 0.05)")
    p.add_argument("--rtol", type=float, default=1e-3, help="raw tensors: relative tolerance (default 1e-3)")
    p.add_argument("--atol", type=float, default=1e-4, help="raw tensors: absolute tolerance (default 1e-4)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


class Row(NamedTuple):
    check: str
    a: str
    b: str
    detail: str
    ok: bool


class Model(object):
    """One side of a comparison: how to run it on frames or on tensors."""

    def __init__(self, path: str, backend: str, say: Callable[[str], None]) -> None:
        if not os.path.exists(path):
            raise TrtedgeError("{} does not exist".format(path))
        self.path = path
        self.detector = None  # type: Any
        self.session = None  # type: Any
        self.backend = None  # type: Any
        self.spec = None  # type: Any
        self.kind = ""
        if path.lower().endswith(ENGINE_EXTS):
            self._open_engine(path, backend, say)
        elif path.lower().endswith(".onnx"):
            self._open_onnx(path)
        else:
            raise TrtedgeError("{} is neither an engine ({}) nor an ONNX file".format(path, ", ".join(ENGINE_EXTS)))

    # ------------------------------------------------------------ opening

    def _open_engine(self, path: str, backend: str, say: Callable[[str], None]) -> None:
        from . import manifest as mf
        from .runtime import compat
        from .runtime.backends import open_backend
        from .runtime.detector import Detector

        m = mf.read(mf.manifest_path(path))
        self.labels = list(m.labels)
        if m.nms is not None:
            self.detector = Detector(path, backend=backend, say=say)
            self.kind = "engine ({})".format(self.detector.backend_name)
            self.threshold = float(m.nms.score_threshold)
        else:
            compat.ensure_usable(path, compat.check_engine(path), backend)
            self.backend = open_backend(path, m, backend, say=say)
            self.kind = "engine ({})".format(self.backend.name)

    def _open_onnx(self, path: str) -> None:
        import onnx
        import onnxruntime as ort

        from .engines.nms import has_plugin, swap_plugin_for_onnx
        from .manifest import get_onnx_metadata

        model = onnx.load(path)
        meta = get_onnx_metadata(model)
        if meta.get("spec"):
            from .specs import spec_from_dict

            self.spec = spec_from_dict(meta["spec"], "{} (metadata)".format(path))
            self.labels = list(self.spec.labels)
            self.threshold = float(self.spec.nms.score_threshold)
            self.kind = "engine ONNX (onnxrt)"
        else:
            self.labels = []
            self.kind = "ONNX model (onnxrt)"
        if has_plugin(model):
            model = swap_plugin_for_onnx(model)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    @property
    def is_detector(self) -> bool:
        return self.detector is not None or self.spec is not None

    def inputs(self) -> List[Tuple[str, str, Tuple[Any, ...]]]:
        """(name, numpy dtype name, shape) of each input."""
        import numpy as np

        if self.session is not None:
            from .runtime.onnxrt_backend import _ort_dtype

            return [(i.name, str(np.dtype(_ort_dtype(i.type))), tuple(i.shape)) for i in self.session.get_inputs()]
        return [(t.name, str(np.dtype(t.dtype)), tuple(t.shape)) for t in self.backend.inputs]

    # ------------------------------------------------------------ running

    def detect(self, frames: Sequence[Any]) -> List[Tuple[Any, Any, Any]]:
        """(boxes in frame pixels, scores, class ids) per frame."""
        if self.detector is not None:
            return [(d.boxes, d.scores, d.class_ids) for d in self.detector.detect(list(frames))]
        import numpy as np

        from .engines.calibration import InputFit
        from .runtime.postprocess import detections_from_outputs, fit_into, to_frame

        spec = self.spec
        fit = InputFit.of_spec(spec)
        inp = self.session.get_inputs()[0]
        names = [o.name for o in self.session.get_outputs()]
        form = "host" if "candidate_boxes" in names else "onnx"
        nms = {"score_threshold": spec.nms.score_threshold, "iou_threshold": spec.nms.iou_threshold,
               "max_per_class": spec.nms.max_per_class, "max_detections": spec.nms.max_detections,
               "class_agnostic": spec.nms.class_agnostic}
        batch = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else 1
        out = []  # type: List[Tuple[Any, Any, Any]]
        for start in range(0, len(frames), batch):
            chunk = list(frames[start:start + batch])
            buf = np.zeros((batch, fit.height, fit.width, 3), np.uint8)
            fits = [fit_into(f[..., ::-1] if fit.swap_rb else f, buf[k], fit.resize, fit.pad_value)
                    for k, f in enumerate(chunk)]
            outputs = dict(zip(names, self.session.run(names, {inp.name: buf})))
            for k, f in enumerate(fits):
                boxes, scores, classes = detections_from_outputs(outputs, form, k, nms, None)
                out.append((to_frame(boxes, f), scores, classes))
        return out

    def tensors(self, feed: Dict[str, Any]) -> Dict[str, Any]:
        if self.session is not None:
            names = [o.name for o in self.session.get_outputs()]
            return dict(zip(names, self.session.run(names, feed)))
        return dict(self.backend.infer(feed))

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
        if self.backend is not None:
            self.backend.close()


# --------------------------------------------------------------------------- detections


def _iou(a: Any, b: Any) -> Any:
    from .evaluation import box_iou

    return box_iou(a, b)


def match(a: Tuple[Any, Any, Any], b: Tuple[Any, Any, Any], iou: float) -> List[Tuple[int, int, float]]:
    """Greedy per-class matching of two frames' detections: (index in a, index in b, IoU), best IoU first."""
    import numpy as np

    pairs = []  # type: List[Tuple[int, int, float]]
    for cls in sorted(set(a[2].tolist()) & set(b[2].tolist())):
        ia = np.flatnonzero(a[2] == cls)
        ib = np.flatnonzero(b[2] == cls)
        m = _iou(a[0][ia], b[0][ib])
        used_a, used_b = set(), set()  # type: set, set
        for flat in np.argsort(-m, axis=None, kind="stable").tolist():
            r, c = divmod(flat, m.shape[1])
            if m[r, c] < iou:
                break
            if r in used_a or c in used_b:
                continue
            used_a.add(r)
            used_b.add(c)
            pairs.append((int(ia[r]), int(ib[c]), float(m[r, c])))
    return pairs


def compare_detections(da: Sequence[Tuple[Any, Any, Any]], db: Sequence[Tuple[Any, Any, Any]], thr_a: float,
                       thr_b: float, iou: float, score_tol: float) -> List[Row]:
    matched = only_a = only_b = borderline = 0
    worst_score = 0.0
    ious = []  # type: List[float]
    bad_frames = 0
    for fa, fb in zip(da, db):
        pairs = match(fa, fb, iou)
        ma = {p[0] for p in pairs}
        mb = {p[1] for p in pairs}
        bad = False
        for i, j, v in pairs:
            ious.append(v)
            diff = abs(float(fa[1][i]) - float(fb[1][j]))
            worst_score = max(worst_score, diff)
            bad = bad or diff > score_tol
        for k in range(len(fa[1])):
            if k not in ma:
                if float(fa[1][k]) < thr_b + score_tol:
                    borderline += 1
                else:
                    only_a += 1
                    bad = True
        for k in range(len(fb[1])):
            if k not in mb:
                if float(fb[1][k]) < thr_a + score_tol:
                    borderline += 1
                else:
                    only_b += 1
                    bad = True
        matched += len(pairs)
        bad_frames += int(bad)
    n_a = sum(len(f[1]) for f in da)
    n_b = sum(len(f[1]) for f in db)
    return [
        Row("frames", str(len(da)), str(len(db)), "{} with a mismatch".format(bad_frames), bad_frames == 0),
        Row("detections", str(n_a), str(n_b), "{} matched (class, IoU >= {}), {} borderline".format(
            matched, iou, borderline), only_a == 0 and only_b == 0),
        Row("unmatched", str(only_a), str(only_b), "scoring above the other side's threshold + {}".format(
            score_tol), only_a == 0 and only_b == 0),
        Row("IoU of matches", "", "", "min {:.3f}, mean {:.3f}".format(min(ious), sum(ious) / len(ious))
            if ious else "none", True),
        Row("score |a-b|", "", "", "max {:.4f} (tolerance {})".format(worst_score, score_tol),
            worst_score <= score_tol),
    ]


# --------------------------------------------------------------------------- tensors


def _feed(inputs: Sequence[Tuple[str, str, Tuple[Any, ...]]], seed: int = 0) -> Dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    feed = {}
    for name, dtype, shape in inputs:
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
        if dtype == "uint8" and len(dims) == 4 and dims[3] == 3:
            from .datasets.shapes import generate
            from .runtime.postprocess import fit_into

            arr = np.zeros(dims, np.uint8)
            for k in range(dims[0]):
                fit_into(generate(seed + 4243, k, (dims[1], dims[2])).image, arr[k])
        elif dtype.startswith(("int", "uint", "bool")):
            arr = rng.integers(0, 2, dims).astype(dtype)
        else:
            arr = rng.random(dims, dtype=np.float32).astype(dtype)
        feed[name] = arr
    return feed


def compare_tensors(ta: Dict[str, Any], tb: Dict[str, Any], rtol: float, atol: float) -> List[Row]:
    import numpy as np

    rows = []
    for name in sorted(set(ta) | set(tb)):
        if name not in ta or name not in tb:
            rows.append(Row(name, "yes" if name in ta else "missing", "yes" if name in tb else "missing",
                            "output of one side only", False))
            continue
        a, b = np.asarray(ta[name]), np.asarray(tb[name])
        if a.shape != b.shape:
            rows.append(Row(name, str(list(a.shape)), str(list(b.shape)), "shapes differ", False))
            continue
        af, bf = a.astype(np.float64), b.astype(np.float64)
        diff = np.abs(af - bf)
        ok = bool(np.all(diff <= atol + rtol * np.abs(bf)))
        rows.append(Row(name, str(list(a.shape)), str(a.dtype) + "/" + str(b.dtype),
                        "max |a-b| {:.3g}, mean {:.3g} (atol {} + rtol {})".format(
                            float(diff.max()) if diff.size else 0.0, float(diff.mean()) if diff.size else 0.0,
                            atol, rtol), ok))
    return rows


# --------------------------------------------------------------------------- command


def _frames(images: Optional[str], count: int) -> List[Any]:
    if images:
        import cv2

        from .engines.calibration import IMAGE_EXTS

        if not os.path.isdir(images):
            raise TrtedgeError("--images {} is not a directory".format(images))
        names = sorted(n for n in os.listdir(images) if n.lower().endswith(IMAGE_EXTS))[:count]
        frames = [cv2.imread(os.path.join(images, n), cv2.IMREAD_COLOR) for n in names]
        frames = [f for f in frames if f is not None]
        if not frames:
            raise TrtedgeError("no readable image in {}".format(images))
        return frames
    from .evalcmd import shapes_set

    return shapes_set(count, seed=4243)[1]


def compare(a: str, b: str, images: Optional[str] = None, shapes: int = 16, backend: str = "auto", iou: float = 0.5,
            score_tol: float = 0.05, rtol: float = 1e-3, atol: float = 1e-4,
            say: Callable[[str], None] = _say) -> Tuple[List[Row], Dict[str, str]]:
    """The rows of the comparison table and what ran each side."""
    if shapes < 1:
        raise TrtedgeError("--shapes must be at least 1")
    ma = Model(a, backend, say)
    mb = Model(b, backend, say)
    try:
        if ma.is_detector != mb.is_detector:
            raise TrtedgeError("{} is a {} and {} a {}: compare two detectors or two plain models".format(
                a, "detector" if ma.is_detector else "plain model", b, "detector" if mb.is_detector else "plain model"))
        if ma.is_detector:
            if ma.labels != mb.labels:
                say("Note: the labels differ ({} vs {}): classes are compared by index".format(
                    ",".join(ma.labels[:4]), ",".join(mb.labels[:4])))
            frames = _frames(images, shapes)
            rows = compare_detections(ma.detect(frames), mb.detect(frames), ma.threshold, mb.threshold, iou, score_tol)
        else:
            ins_a, ins_b = ma.inputs(), mb.inputs()
            if [(n, d) for n, d, _ in ins_a] != [(n, d) for n, d, _ in ins_b]:
                raise TrtedgeError("the inputs differ ({} vs {}): raw tensors need the same inputs".format(
                    ins_a, ins_b))
            feed = _feed(ins_a)
            rows = compare_tensors(ma.tensors(feed), mb.tensors(feed), rtol, atol)
        return rows, {"a": ma.kind, "b": mb.kind}
    finally:
        ma.close()
        mb.close()


def format_table(rows: Sequence[Row], a: str, b: str) -> str:
    head = Row("check", "A", "B", "detail", True)
    cols = list(zip(*[(r.check, r.a, r.b, r.detail) for r in [head] + list(rows)]))
    widths = [max(len(str(v)) for v in col) for col in cols]
    lines = ["A: {}".format(a), "B: {}".format(b)]
    for k, r in enumerate([head] + list(rows)):
        cells = [str(v).ljust(w) for v, w in zip((r.check, r.a, r.b, r.detail), widths)]
        status = "RESULT" if k == 0 else ("ok" if r.ok else "MISMATCH")
        lines.append("  ".join(cells + [status]).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows, kinds = compare(args.a, args.b, images=args.images, shapes=args.shapes, backend=args.backend, iou=args.iou,
                          score_tol=args.score_tol, rtol=args.rtol, atol=args.atol,
                          say=(lambda m: None) if args.json else _say)
    same = all(r.ok for r in rows)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "match": same, "rows": [r._asdict() for r in rows]}, indent=2))
    else:
        print(format_table(rows, "{} [{}]".format(args.a, kinds["a"]), "{} [{}]".format(args.b, kinds["b"])))
        print("match" if same else "MISMATCH")
    return 0 if same else 1


COMMAND = (add_arguments, run, "compare two engines, engine ONNX or models: detections or raw tensors; exit 1 if "
                               "they differ")
