"""How much FrameSlots' overlap buys: frames processed one at a time vs. pipelined.

Each frame: host work (copy a source frame into the pinned input), H2D upload,
"compute" (device-to-device copies standing in for an engine), D2H download.
Serial: one slot, everything on one stream, the host waits for each frame.
Pipelined: N slots; frame k+1's host work and upload overlap frame k's
compute and download. Also times two big copies in opposite directions, alone
and at once (2 copy engines let them overlap). Needs a GPU:

    python benchmarks/cuda_overlap.py [--backend cuda-python|pycuda] [--mb 32] [--host-mb 8] [--work 30]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trtedge.runtime.cuda import CudaUnavailable, FrameSlots, get_cuda  # noqa: E402


def run_frames(cuda, sources, slots_count, work, serial, host_bytes):
    """(wall ms per frame, host-work ms per frame, upload->done GPU ms per frame, all results correct)."""
    nbytes = sources[0].nbytes
    spec_in = {"x": ((nbytes,), np.uint8)}
    spec_out = {"y": ((nbytes,), np.uint8)}
    scratch = cuda.malloc(nbytes)
    checks = []
    host_ms = []
    gpu_ms = []
    frames = len(sources) * 4
    with FrameSlots(cuda, spec_in, spec_out, count=slots_count, timing=True) as slots:
        comp = slots.compute_stream

        def one(k, slot):
            t = time.perf_counter()
            src = sources[k % len(sources)]
            # host work: rewrite the first host_bytes of the pinned input (a stand-in for decode + resize)
            np.copyto(slot.host_inputs["x"][:host_bytes], src[:host_bytes])
            host_ms.append((time.perf_counter() - t) * 1e3)
            if serial:
                slot.upload(comp)
            else:
                slot.upload()
                slot.wait_uploaded()
            for _ in range(work):  # stand-in for the engine
                cuda.memcpy_dtod_async(scratch, slot.device_inputs["x"], stream=comp)
            cuda.memcpy_dtod_async(slot.device_outputs["y"], slot.device_inputs["x"], stream=comp)
            slot.download()

        def consume(slot):
            out = slot.wait()["y"]
            gpu_ms.append(slot.elapsed_ms())
            src = sources[slot.tag % len(sources)]
            checks.append(bool(out[:host_bytes:4096].tobytes() == src[:host_bytes:4096].tobytes()))

        t = time.perf_counter()
        previous = None
        for k in range(frames):
            slot = slots.acquire()
            slot.tag = k
            one(k, slot)
            if serial:
                consume(slot)
                continue
            if previous is not None:
                consume(previous)
            previous = slot
        if previous is not None:
            consume(previous)
        total = time.perf_counter() - t
    scratch.free()
    return total * 1e3 / frames, float(np.median(host_ms)), float(np.median(gpu_ms)), all(checks)


def copy_overlap(cuda, mb):
    n = mb << 20
    up_h, down_h = cuda.pinned_empty(n, np.uint8), cuda.pinned_empty(n, np.uint8)
    up_h[::4096] = 1
    up_d, down_d = cuda.malloc(n), cuda.malloc(n)
    s1, s2 = cuda.stream(), cuda.stream()
    e0, e1, e2 = cuda.event(), cuda.event(), cuda.event()

    def timed(streams_ops):
        e0.record(s1)
        s2.wait_event(e0)
        for s, op in streams_ops:
            op(s)
        e1.record(s1)
        e2.record(s2)
        e1.synchronize()
        e2.synchronize()
        return max(cuda.elapsed_ms(e0, e1), cuda.elapsed_ms(e0, e2))

    up = lambda s: cuda.memcpy_htod_async(up_d, up_h, s)  # noqa: E731
    down = lambda s: cuda.memcpy_dtoh_async(down_h, down_d, s)  # noqa: E731
    timed([(s1, up), (s2, down)])
    h2d = min(timed([(s1, up)]) for _ in range(3))
    d2h = min(timed([(s2, down)]) for _ in range(3))
    both = min(timed([(s1, up), (s2, down)]) for _ in range(3))
    up_d.free()
    down_d.free()
    return h2d, d2h, both


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cuda-python")
    ap.add_argument("--mb", type=int, default=32, help="MiB per frame, in and out")
    ap.add_argument("--frames", type=int, default=10, help="distinct source frames (each is run 4 times)")
    ap.add_argument("--work", type=int, default=30, help="device-to-device copies per frame standing in for compute")
    ap.add_argument("--host-mb", type=int, default=8, help="MiB of the input the host rewrites per frame")
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args()
    try:
        cuda = get_cuda(args.backend)
    except CudaUnavailable as exc:
        print("skipped: {}".format(exc))
        return 0
    info = cuda.device_info()
    print("{} via {}: cc {}, {} copy engine(s)".format(info["name"], cuda.name, info["compute_capability"],
                                                        info.get("async_engine_count", "?")))
    h2d, d2h, both = copy_overlap(cuda, 256)
    print("copies of 256 MiB: H2D {:.2f} ms ({:.1f} GB/s), D2H {:.2f} ms ({:.1f} GB/s), both at once {:.2f} ms "
          "= {:.0%} of their sum".format(h2d, 256 * 1.048576 / h2d, d2h, 256 * 1.048576 / d2h, both, both / (h2d + d2h)))
    rng = np.random.default_rng(0)
    sources = [rng.integers(0, 256, size=args.mb << 20, dtype=np.uint8) for _ in range(args.frames)]
    host_bytes = min(args.host_mb, args.mb) << 20
    run_frames(cuda, sources[:2], 1, args.work, True, host_bytes)  # warm up
    serial, host, gpu, ok1 = run_frames(cuda, sources, 1, args.work, True, host_bytes)
    piped, _, _, ok2 = run_frames(cuda, sources, args.slots, args.work, False, host_bytes)
    print("frames of {} MiB ({} MiB host work = {:.2f} ms; upload + {} D2D copies + download = {:.2f} ms GPU): "
          "serial {:.2f} ms/frame, {} slots pipelined {:.2f} ms/frame ({:.2f}x), results {}".format(
              args.mb, host_bytes >> 20, host, args.work, gpu, serial, args.slots, piped, serial / piped,
              "correct" if ok1 and ok2 else "WRONG"))
    return 0 if ok1 and ok2 else 1

if __name__ == "__main__":
    sys.exit(main())
