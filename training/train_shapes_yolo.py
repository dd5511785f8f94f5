#!/usr/bin/env python3
"""Train a small anchor-free detector on the synthetic shapes set and export it to ONNX.

CPU only, a few minutes. Images are generated in this process with
:func:`trtedge.datasets.shapes.generate`: about half are 256x256, the rest
are other (mostly non-square) frames letterboxed to 256 the way a runtime
does it (aspect kept, padded with 114), so the model is used to padding.

Model: C2f-style backbone (Conv-BN-SiLU), a small PAN neck, decoupled heads on
strides 8, 16 and 32; each cell predicts its distances to the box sides
(softplus, in strides) and 3 class logits. Training uses a task-aligned
assigner (top-10 cells inside each box, ranked by score^0.5 * IoU^6), BCE
with IoU-aware targets for classes, CIoU plus L1 on the distances for boxes,
AdamW with a time-based cosine schedule, and EMA weights.

Export contract (other code depends on it): ONNX opset 17, input ``images``
float32 ``[batch, 3, 256, 256]`` RGB in 0..1 (batch dynamic), output
``output0`` float32 ``[batch, 7, 1344]``: rows 0..3 ``cx, cy, w, h`` in input
pixels, rows 4..6 class probabilities (sigmoid applied); columns are the grid
cells of stride 8 (32x32), then 16 (16x16), then 32 (8x8), row-major. No NMS.

Usage::

    python training/train_shapes_yolo.py --minutes 13 --out trtedge/models/shapes_yolo.onnx \
        --checkpoint /tmp/shapes_yolo.pt
    # train longer, from the EMA weights of a checkpoint, on fresh images:
    python training/train_shapes_yolo.py --minutes 13 --seed 1 --lr 1e-3 --init /tmp/shapes_yolo.pt

On a CPU shared with other jobs, ``--threads 1`` (and ``OMP_WAIT_POLICY=PASSIVE``)
is much faster than two OpenMP threads fighting for one free core.
"""

import argparse
import copy
import math
import os
import queue
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of unmapping it.

    Every training step allocates and frees the same few hundred MB; on VMs
    where page faults are expensive, handing them back to the kernel each time
    made steps several times slower. Harmless (no-op) elsewhere.
    """
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve big blocks from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not shrink the heap
    except (OSError, AttributeError):
        pass


_keep_freed_memory()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (ROOT, HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import eval_shapes_yolo as ev  # noqa: E402
from trtedge.datasets import shapes  # noqa: E402

NUM_CLASSES = len(shapes.CLASSES)
STRIDES = (8, 16, 32)
# Frame sizes (h, w) besides 256x256 that are letterboxed to the input size.
OTHER_SIZES = ((480, 640), (360, 640), (640, 480), (240, 320), (384, 512), (320, 320), (200, 200), (288, 512))


# --------------------------------------------------------------------------- model


class Conv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 3)
        self.cv2 = Conv(c, c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """Split in two halves, run n bottlenecks on one, concatenate every stage, fuse."""

    def __init__(self, c1: int, c2: int, n: int = 1) -> None:
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.c) for _ in range(n))
        self.cv2 = Conv((2 + n) * self.c, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for block in self.blocks:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int) -> None:
        super().__init__()
        c = c1 // 2
        self.cv1 = Conv(c1, c, 1)
        self.cv2 = Conv(4 * c, c2, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Head(nn.Module):
    """Decoupled head for one level: box distances (4) and class logits."""

    def __init__(self, c: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.box = nn.Sequential(Conv(c, width, 3), Conv(width, width, 3), nn.Conv2d(width, 4, 1))
        self.cls = nn.Sequential(Conv(c, width, 3), Conv(width, width, 3), nn.Conv2d(width, num_classes, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.box(x), self.cls(x)


class ShapesDetector(nn.Module):
    """Input float [B, 3, S, S] RGB 0..1. ``forward`` returns the export output
    [B, 4 + C, N]; ``raw`` returns (distances [B, N, 4] px, logits [B, N, C])."""

    def __init__(
        self, num_classes: int = NUM_CLASSES, size: int = 256, w: Sequence[int] = (16, 32, 48, 64, 96), head_width: int = 32
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.size = size
        c0, c1, c2, c3, c4 = w
        self.stem = Conv(3, c0, 3, 2)  # /2
        self.stage1 = nn.Sequential(Conv(c0, c1, 3, 2), C2f(c1, c1, 1))  # /4
        self.stage2 = nn.Sequential(Conv(c1, c2, 3, 2), C2f(c2, c2, 2))  # /8
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3, 1))  # /16
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4, 1), SPPF(c4, c4))  # /32
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top4 = C2f(c4 + c3, c3, 1)
        self.top3 = C2f(c3 + c2, c2, 1)
        self.down3 = Conv(c2, c2, 3, 2)
        self.bot4 = C2f(c2 + c3, c3, 1)
        self.down4 = Conv(c3, c3, 3, 2)
        self.bot5 = C2f(c3 + c4, c4, 1)
        self.heads = nn.ModuleList(Head(c, head_width, num_classes) for c in (c2, c3, c4))

        anchors, strides = make_anchors(size)
        self.register_buffer("anchors", anchors, persistent=False)  # [N, 2] cell centres, px
        self.register_buffer("strides", strides, persistent=False)  # [N, 1]
        self._init_biases()

    def _init_biases(self) -> None:
        for head, stride in zip(self.heads, STRIDES):
            nn.init.constant_(head.box[-1].bias, 1.0)  # softplus(1) = 1.3 strides per side
            prior = 5.0 / self.num_classes / (self.size / stride) ** 2  # ~5 objects per image
            nn.init.constant_(head.cls[-1].bias, math.log(prior / (1 - prior)))

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stage1(self.stem(x))
        p3 = self.stage2(x)
        p4 = self.stage3(p3)
        p5 = self.stage4(p4)
        t4 = self.top4(torch.cat([self.up(p5), p4], 1))
        n3 = self.top3(torch.cat([self.up(t4), p3], 1))
        n4 = self.bot4(torch.cat([self.down3(n3), t4], 1))
        n5 = self.bot5(torch.cat([self.down4(n4), p5], 1))
        return [n3, n4, n5]

    def raw(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        dist, logits = [], []
        for feat, head, stride in zip(self.features(x), self.heads, STRIDES):
            d, c = head(feat)
            cells = (self.size // stride) ** 2  # a Python int: static shapes in the ONNX graph
            dist.append(d.reshape(-1, 4, cells))
            logits.append(c.reshape(-1, self.num_classes, cells))
        d = torch.cat(dist, 2)  # [B, 4, N]
        c = torch.cat(logits, 2)  # [B, C, N]
        d = F.softplus(d) * self.strides.T  # ltrb in px
        return d.transpose(1, 2), c.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist, logits = self.raw(x)
        a = self.anchors
        x1y1 = a - dist[..., :2]
        x2y2 = a + dist[..., 2:]
        cxcy = (x1y1 + x2y2) * 0.5
        wh = x2y2 - x1y1
        return torch.cat([cxcy, wh, logits.sigmoid()], 2).transpose(1, 2)  # [B, 4 + C, N]


def make_anchors(size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    points, strides = [], []
    for s in STRIDES:
        n = size // s
        ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
        points.append(torch.stack([xs.flatten(), ys.flatten()], 1).add(0.5).mul(s))
        strides.append(torch.full((n * n, 1), float(s)))
    return torch.cat(points), torch.cat(strides)


# --------------------------------------------------------------------------- data


def make_batch(
    rng: np.random.Generator, seed: int, counter: int, batch: int, size: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training batch: images [B, 3, S, S], gt boxes [B, M, 4], classes [B, M], valid [B, M]."""
    images = []
    all_boxes, all_classes = [], []
    for i in range(batch):
        index = counter + i
        if rng.random() < 0.5:
            sample = shapes.generate(seed, index, (size, size))
            image, boxes = sample.image, sample.boxes
        else:
            hw = OTHER_SIZES[int(rng.integers(len(OTHER_SIZES)))]
            sample = shapes.generate(seed, index, hw)
            mode = "nearest" if rng.random() < 0.2 else "bilinear"
            offset = None
            if rng.random() < 0.2:
                scale = min(size / hw[0], size / hw[1])
                nh, nw = int(round(hw[0] * scale)), int(round(hw[1] * scale))
                offset = (int(rng.integers(0, size - nw + 1)), int(rng.integers(0, size - nh + 1)))
            box = ev.letterbox(sample.image, size, mode, offset)
            image = box.image
            boxes = sample.boxes * box.scale + np.array([box.left, box.top] * 2, dtype=np.float32)
        if rng.random() < 0.5:  # horizontal flip: free variety for the rotations
            image = image[:, ::-1]
            boxes = boxes[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], dtype=np.float32) + np.array(
                [size, 0, size, 0], dtype=np.float32
            )
        images.append(ev.to_input(image))
        all_boxes.append(boxes)
        all_classes.append(sample.classes)
    m = max(1, max(len(b) for b in all_boxes))
    gt = np.zeros((batch, m, 4), np.float32)
    cls = np.zeros((batch, m), np.int64)
    valid = np.zeros((batch, m), bool)
    for i, (b, c) in enumerate(zip(all_boxes, all_classes)):
        gt[i, : len(b)] = b
        cls[i, : len(c)] = c
        valid[i, : len(b)] = True
    return torch.from_numpy(np.stack(images)), torch.from_numpy(gt), torch.from_numpy(cls), torch.from_numpy(valid)


class Prefetcher(object):
    """Builds batches in a background thread (NumPy releases the GIL for most of it)."""

    def __init__(self, seed: int, batch: int, size: int, depth: int = 3) -> None:
        self.seed, self.batch, self.size = seed, batch, size
        self.queue = queue.Queue(maxsize=depth)  # type: queue.Queue
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        k = 0
        while not self.stopped.is_set():
            rng = np.random.default_rng([self.seed, 777, k])  # batch k is the same whatever the timing
            item = make_batch(rng, self.seed, k * self.batch, self.batch, self.size)
            while not self.stopped.is_set():
                try:
                    self.queue.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            k += 1

    def next(self):
        return self.queue.get()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- loss


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of a [B, M, 4] and b [B, N, 4] xyxy -> [B, M, N]."""
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter + 1e-9)


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching xyxy boxes a, b [K, 4] -> [K]."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    wa, ha = (a[:, 2] - a[:, 0]).clamp(min=eps), (a[:, 3] - a[:, 1]).clamp(min=eps)
    wb, hb = (b[:, 2] - b[:, 0]).clamp(min=eps), (b[:, 3] - b[:, 1]).clamp(min=eps)
    iou = inter / (wa * ha + wb * hb - inter + eps)
    enclose = torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])
    c2 = enclose.pow(2).sum(-1) + eps
    rho2 = ((a[:, :2] + a[:, 2:]) - (b[:, :2] + b[:, 2:])).pow(2).sum(-1) / 4
    v = (4 / math.pi**2) * (torch.atan(wb / hb) - torch.atan(wa / ha)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


@torch.no_grad()
def assign(
    scores: torch.Tensor,
    pred: torch.Tensor,
    anchors: torch.Tensor,
    gt: torch.Tensor,
    gt_cls: torch.Tensor,
    valid: torch.Tensor,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Task-aligned assignment.

    scores [B, N, C] probabilities, pred [B, N, 4] xyxy, anchors [N, 2],
    gt [B, M, 4], gt_cls [B, M], valid [B, M]. Returns fg [B, N] bool,
    target boxes [B, N, 4] and soft class targets [B, N, C].
    """
    b, n, c = scores.shape
    m = gt.shape[1]
    ax, ay = anchors[:, 0], anchors[:, 1]
    inside = (
        (ax[None, None] > gt[..., 0:1])
        & (ax[None, None] < gt[..., 2:3])
        & (ay[None, None] > gt[..., 1:2])
        & (ay[None, None] < gt[..., 3:4])
        & valid[..., None]
    )  # [B, M, N]
    ious = pairwise_iou(gt, pred).clamp(min=0)  # [B, M, N]
    cls_scores = scores.gather(2, gt_cls[:, None, :].expand(b, n, m)).transpose(1, 2)  # [B, M, N]
    align = cls_scores.pow(alpha) * ious.pow(beta) * inside
    # Tie-break by closeness to the box centre so every box gets cells from the start.
    centre = (gt[..., :2] + gt[..., 2:]) / 2
    dist = (anchors[None, None] - centre[:, :, None]).norm(dim=-1)
    metric = align + inside * (1e-12 / (1.0 + dist))
    top = metric.topk(min(topk, n), dim=-1).indices
    chosen = torch.zeros_like(inside)
    chosen.scatter_(2, top, True)
    pos = chosen & inside  # [B, M, N]
    # A cell claimed by several boxes keeps the one it overlaps best.
    multi = pos.sum(1, keepdim=True) > 1
    best = F.one_hot((ious * pos).argmax(1), m).transpose(1, 2).bool()
    pos = torch.where(multi, best & pos, pos)
    fg = pos.any(1)  # [B, N]
    idx = pos.float().argmax(1)  # [B, N]
    t_boxes = gt.gather(1, idx[..., None].expand(b, n, 4))
    t_cls = gt_cls.gather(1, idx)
    align = align * pos
    norm = (align * (ious * pos).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + 1e-9)).amax(1)  # [B, N]
    t_scores = F.one_hot(t_cls, c).float() * (norm * fg)[..., None]
    return fg, t_boxes, t_scores


def compute_loss(model: ShapesDetector, images: torch.Tensor, gt: torch.Tensor, gt_cls: torch.Tensor, valid: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
    dist, logits = model.raw(images)
    anchors = model.anchors
    pred = torch.cat([anchors - dist[..., :2], anchors + dist[..., 2:]], -1)  # [B, N, 4]
    fg, t_boxes, t_scores = assign(logits.detach().sigmoid(), pred.detach(), anchors, gt, gt_cls, valid)
    total = t_scores.sum().clamp(min=1.0)
    loss_cls = F.binary_cross_entropy_with_logits(logits, t_scores, reduction="sum") / total
    if fg.any():
        weight = t_scores.sum(-1)[fg]
        loss_box = ((1.0 - ciou(pred[fg], t_boxes[fg])) * weight).sum() / total
        stride = model.strides[:, 0].expand_as(fg)[fg][:, None]
        a = anchors.expand(fg.shape[0], -1, -1)[fg]
        t_dist = torch.cat([a - t_boxes[fg][:, :2], t_boxes[fg][:, 2:] - a], -1).clamp(min=0)
        loss_l1 = ((dist[fg] - t_dist).abs() / stride).mean(-1).mul(weight).sum() / total
    else:
        loss_box = loss_l1 = pred.sum() * 0.0
    loss = 7.5 * loss_box + 0.5 * loss_cls + 1.5 * loss_l1
    return loss, {"box": loss_box.item(), "cls": loss_cls.item(), "l1": loss_l1.item()}


# --------------------------------------------------------------------------- training


class EMA(object):
    def __init__(self, model: nn.Module, decay: float = 0.9985, tau: float = 200.0) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        source = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])


def torch_predictor(model: nn.Module):
    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return predict


def export_onnx(model: ShapesDetector, path: str, size: int) -> None:
    import onnx  # noqa: PLC0415

    model = copy.deepcopy(model).eval()
    dummy = torch.rand(2, 3, size, size)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.onnx.export(
        model,
        (dummy,),
        path,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        opset_version=17,
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load(path)
    # Spell out the output shape [batch, 4 + C, N] (the exporter may leave symbolic names).
    cells = sum((size // s) ** 2 for s in STRIDES)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    dims[1].dim_value = 4 + model.num_classes
    dims[2].dim_value = cells
    onnx.checker.check_model(proto)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    proto.doc_string = "trtedge shapes detector: images [batch,3,{0},{0}] RGB 0..1 -> output0 [batch,7,N] cx,cy,w,h,p(circle),p(square),p(triangle)".format(size)
    onnx.save(proto, path)  # small: weights stay inline


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=13.0, help="training time budget (wall clock)")
    parser.add_argument("--seed", type=int, default=0, help="training data and init seed")
    parser.add_argument("--out", default=os.path.join(ROOT, "trtedge", "models", "shapes_yolo.onnx"))
    parser.add_argument("--size", type=int, default=256, help="input size (the contract is 256)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--val-count", type=int, default=ev.VAL_COUNT)
    parser.add_argument("--prefetch", action="store_true", help="build batches in a background thread")
    parser.add_argument("--checkpoint", default=None, help="save model/EMA weights here (after each evaluation and at the end)")
    parser.add_argument("--init", default=None, help="start from the EMA weights of this checkpoint (to train longer)")
    parser.add_argument("--export-only", action="store_true", help="with --init: no training, just evaluate and export")
    args = parser.parse_args(argv)
    if args.size % 32:
        parser.error("--size must be a multiple of 32")

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ShapesDetector(size=args.size)
    print("parameters: {:,}".format(sum(p.numel() for p in model.parameters())), flush=True)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.999)
    )
    seen_before = 0
    if args.init:
        state = torch.load(args.init, map_location="cpu")
        model.load_state_dict(state["ema"])
        seen_before = int(state.get("images", 0))
        print("initialised from {} ({} images seen before)".format(args.init, seen_before), flush=True)
    ema = EMA(model)
    if args.init:
        ema.updates = 10**6  # the weights are already averaged: full decay from the start

    def save_checkpoint() -> None:
        if args.checkpoint:
            torch.save(
                {"model": model.state_dict(), "ema": ema.model.state_dict(), "images": seen_before + seen, "args": vars(args)},
                args.checkpoint,
            )

    val_items = ev.validation_set(ev.VAL_SEED, args.val_count, args.size)
    budget = 0.0 if args.export_only else args.minutes * 60.0
    if args.export_only and not args.init:
        parser.error("--export-only needs --init CHECKPOINT")
    warmup = 100
    batches = Prefetcher(args.seed, args.batch, args.size) if args.prefetch else None
    start = time.time()
    step, seen = 0, 0
    next_eval = budget / 3.0
    log = {"box": 0.0, "cls": 0.0, "l1": 0.0, "n": 0}
    last_print = start
    model.train()
    while True:
        elapsed = time.time() - start
        if elapsed >= budget:
            break
        progress = elapsed / budget
        factor = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))
        if step < warmup:
            factor *= 0.1 + 0.9 * step / warmup
        for group in optimizer.param_groups:
            group["lr"] = args.lr * factor
        if batches is not None:
            images, gt, gt_cls, valid = batches.next()
        else:
            rng = np.random.default_rng([args.seed, 777, step])
            images, gt, gt_cls, valid = make_batch(rng, args.seed, step * args.batch, args.batch, args.size)
        loss, parts = compute_loss(model, images, gt, gt_cls, valid)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        ema.update(model)
        step += 1
        seen += args.batch
        for k, v in parts.items():
            log[k] += v
        log["n"] += 1
        now = time.time()
        if now - last_print >= 30 or step == 1:
            n = max(log["n"], 1)
            print(
                "[{:5.1f} min] step {:5d}  img/s {:5.1f}  lr {:.2e}  box {:.3f}  cls {:.3f}  l1 {:.3f}".format(
                    (now - start) / 60, step, seen / (now - start), args.lr * factor, log["box"] / n, log["cls"] / n, log["l1"] / n
                ),
                flush=True,
            )
            log = {"box": 0.0, "cls": 0.0, "l1": 0.0, "n": 0}
            last_print = now
        if now - start >= next_eval and now - start < budget - 30:
            t0 = time.time()
            mean, _ = ev.evaluate(torch_predictor(ema.model), val_items[:100])
            print("  EMA mAP@0.5 on 100 val images: {:.4f} ({:.1f} s, not counted as training)".format(mean, time.time() - t0), flush=True)
            save_checkpoint()
            start += time.time() - t0  # evaluation does not eat the training budget
            next_eval += budget / 3.0

    if batches is not None:
        batches.close()
    train_time = time.time() - start
    if step:
        print("trained {} steps, {} images in {:.1f} min ({:.1f} img/s)".format(step, seen, train_time / 60, seen / train_time), flush=True)
        save_checkpoint()
    final = ema.model.eval()
    mean, per_class = ev.evaluate(torch_predictor(final), val_items)
    print(
        "PyTorch (EMA) mAP@0.5 = {:.4f} on {} val images ({})".format(
            mean, len(val_items), ", ".join("{} {:.4f}".format(c, ap) for c, ap in zip(shapes.CLASSES, per_class))
        ),
        flush=True,
    )

    export_onnx(final, args.out, args.size)
    ort_predict = ev.onnx_predictor(args.out)
    probe = np.stack([item.tensor for item in val_items[:8]])
    diff = float(np.abs(ort_predict(probe) - torch_predictor(final)(probe)).max())
    print("ONNX written to {} ({:.2f} MB); max |ORT - PyTorch| = {:.2e}".format(args.out, os.path.getsize(args.out) / 2**20, diff), flush=True)
    if diff >= 1e-3:
        print("WARNING: ONNX Runtime output differs from PyTorch by more than 1e-3", flush=True)
    mean_ort, per_class_ort = ev.evaluate(ort_predict, val_items)
    print(
        "ONNX Runtime mAP@0.5 = {:.4f} on {} val images ({})".format(
            mean_ort, len(val_items), ", ".join("{} {:.4f}".format(c, ap) for c, ap in zip(shapes.CLASSES, per_class_ort))
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
