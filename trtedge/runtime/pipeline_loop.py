"""The detect loop, in three stages that run at the same time.

* **readers** — one thread per source reads a frame and fits it to the
  engine's input (:meth:`Detector.prepare`: decode and letterbox), into a
  bounded queue. A live source's queue drops its oldest frame when full (a
  camera must stay current; the drop is counted); a file's reader waits
  instead (files never drop a frame).
* **the engine** — the calling thread takes one frame from each source and
  submits the batch. With an asynchronous backend (TensorRT) it then collects
  the batch before it (one batch in flight: the next upload overlaps the
  current execution). With a synchronous one (ONNX Runtime, whose run
  releases the GIL) the engine is the only work of this thread: the readers
  prepare the next frames while it runs, and the writer turns its outputs
  into detections.
* **the writer** — one thread takes batches, in order, from a bounded queue:
  it collects them where the engine thread did not (host NMS, boxes back to
  frame pixels), records the statistics, updates the progress line and
  hands each frame to the sinks (JSON lines, video, image files). A sink
  that must live in the calling thread (the window: GUI toolkits want one
  thread) is written there, after the engine thread collected the batch.

**Cores.** When the engine runs on the CPU (ONNX Runtime: ``host_threads``
cores) and the process may use more cores than that, the engine thread is
kept on the first ``host_threads`` of them for the loop and the readers and
the writer on the rest (thread CPU affinity; Linux only, elsewhere nothing is
pinned). Left to the scheduler, the decoder and the engine swap cores and
each refills its caches on the other: on the 2-core CI machine, interleaved
in one process, the pipeline kept 2-7 % more of the engine's throughput
pinned than unpinned (three runs), while pinning the engine alone changed
nothing. ONNX Runtime's own pool threads (more than one engine thread) are
left where ONNX Runtime puts them. An engine on the GPU pins nothing.

:func:`run_loop` returns when every source has ended, ``max_frames`` frames
have been seen, or a sink asks to stop; Ctrl-C (``KeyboardInterrupt``) and
errors from any stage pass through it after every thread has been stopped.
What was queued for the sinks is written before it returns or raises, so
outputs end with the last frame that got a result.
"""

import queue
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Set

from ..utils.cores import pin_thread, split_cores

#: how long the engine waits on a live source before serving the others
LIVE_WAIT_S = 0.5
_TICK = 0.2  # blocking waits wake this often to notice a stop or an error
_END = object()


class _Reader(threading.Thread):
    """Reads one source and prepares its frames, into ``self.queue``."""

    def __init__(self, source: Any, prepare: Callable[..., Any], limit: Optional[int], depth: int,
                 stop: threading.Event, recycles: bool = False, cores: Optional[Set[int]] = None) -> None:
        super().__init__(name="trtedge-read-{}".format(getattr(source, "name", "source")), daemon=True)
        self.cores = cores  # where this thread runs (the cores an engine on the CPU leaves); None: anywhere
        self.source = source
        self.live = bool(getattr(source, "live", False))
        self.prepare = prepare
        self.limit = limit
        self.queue = queue.Queue(maxsize=max(1, depth))  # type: Any
        self.stop = stop
        self.error = None  # type: Optional[BaseException]
        self.dropped = 0  # prepared frames the engine had no time for (live sources only)
        # input arrays the engine is done with, filled again with the next frames (Detector.prepare's
        # ``out``); list.append and list.pop are atomic, so the engine thread gives back without a lock
        self.recycles = recycles
        self.spare = []  # type: List[Any]

    def give_back(self, prepared: Any) -> None:
        """``prepared`` was submitted: its input array can take another frame."""
        if self.recycles and len(self.spare) < 8:
            self.spare.append(prepared.input)

    def _put(self, item: Any) -> bool:
        if self.live and item is not _END:
            while True:
                try:
                    self.queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        self.give_back(self.queue.get_nowait()[1])
                        self.dropped += 1
                    except queue.Empty:
                        pass
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=_TICK)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        pin_thread(self.cores)
        try:
            count = 0
            while not self.stop.is_set() and (self.limit is None or count < self.limit):
                frame = self.source.read(timeout=LIVE_WAIT_S if self.live else None)
                if frame is None:
                    if getattr(self.source, "ended", True):
                        break
                    continue
                if self.recycles:
                    prepared = self.prepare(frame.image, self.spare.pop() if self.spare else None)
                else:
                    prepared = self.prepare(frame.image)
                if not self._put((frame, prepared)):
                    return
                count += 1
        except BaseException as exc:  # handed to the engine thread, which raises it
            self.error = exc
        finally:
            self._put(_END)

    def get(self, timeout: Optional[float]) -> Any:
        """The next (frame, prepared) item, ``_END``, or None when ``timeout`` passed."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


class _Writer(threading.Thread):
    """Collects (where asked), records and writes batches, in order, from a bounded queue."""

    def __init__(self, det: Any, sinks: Sequence[Any], stats: Any, progress: Any, dropped: Callable[[], int],
                 depth: int, cores: Optional[Set[int]] = None) -> None:
        super().__init__(name="trtedge-write", daemon=True)
        self.cores = cores
        self.det = det
        self.sinks = list(sinks)
        self.stats = stats
        self.progress = progress
        self.dropped = dropped
        self.queue = queue.Queue(maxsize=max(1, depth))  # type: Any
        self.error = None  # type: Optional[BaseException]
        self.stop_asked = False

    def run(self) -> None:
        pin_thread(self.cores)
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if self.error is not None or self.stop_asked:
                continue  # keep draining so that the engine thread never blocks
            try:
                self._one(*item)
            except BaseException as exc:
                self.error = exc

    def _one(self, chunk: Sequence[Any], ticket: Any, results: Optional[List[Any]], when: float) -> None:
        if results is None:
            results = self.det.collect(ticket)
            when = time.time()
        for (frame, _), result in zip(chunk, results):
            self.stats.record(frame.time, when)
            for sink in self.sinks:
                if sink.write(frame, result) is False:
                    self.stop_asked = True
                    return
        if self.progress is not None:
            self.progress.update(self.stats.frames, self.dropped())

    def put(self, item: Any) -> None:
        while True:
            self.check()
            try:
                self.queue.put(item, timeout=_TICK)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Write what is queued, then stop the thread."""
        if not self.is_alive():
            return
        while True:
            try:
                self.queue.put(_END, timeout=_TICK)
                break
            except queue.Full:
                if not self.is_alive():
                    return
        while self.is_alive():
            self.join(_TICK)


def _in_main_thread(sink: Any) -> bool:
    return bool(getattr(sink, "main_thread", False))


def run_loop(det: Any, sources: Sequence[Any], sinks: Sequence[Any], stats: Any, max_frames: Optional[int] = None,
             progress: Any = None, depth: int = 4) -> bool:
    """Run ``det`` over ``sources`` into ``sinks`` until the sources end, ``max_frames``
    frames (all sources together), or a sink asks to stop (then False).

    ``stats`` (a :class:`~trtedge.runtime.sinks.RunStats`) records each
    frame's capture-to-result latency; ``progress`` (a
    :class:`~trtedge.runtime.sinks.Progress`) is updated after each batch.
    ``depth`` bounds each file reader's queue (a live source keeps one
    prepared frame: the newest) and, twice over, the writer's.
    """
    stop = threading.Event()
    # an engine on the CPU keeps this thread on its cores, and the readers and the writer on the others
    split = split_cores(int(getattr(det, "host_threads", 0) or 0))
    engine_cores, other_cores = split if split is not None else (None, None)
    # a file's reader reads no more than can be used; a live one runs until the engine has enough
    recycles = bool(getattr(det, "recycles_inputs", False))  # prepare(image, out) fills a given array
    readers = []  # type: List[_Reader]
    for src in sources:
        live = bool(getattr(src, "live", False))
        readers.append(_Reader(src, det.prepare, None if live else max_frames, 1 if live else depth, stop, recycles,
                               other_cores))
    here = [s for s in sinks if _in_main_thread(s)]
    # a synchronous backend has already run when submit returns: collecting is host work for the writer
    collect_here = bool(here) or bool(getattr(det, "asynchronous", True))

    def dropped() -> int:
        return sum(int(getattr(r.source, "dropped", 0)) + r.dropped for r in readers)

    writer = _Writer(det, [s for s in sinks if not _in_main_thread(s)], stats, progress, dropped, depth * 2,
                     other_cores)
    finished = False
    for r in readers:
        r.start()
    writer.start()

    def finish(item: Any) -> bool:
        chunk, ticket = item
        if not collect_here:
            writer.put((chunk, ticket, None, 0.0))
            return True
        results = det.collect(ticket)
        now = time.time()
        for (frame, _), result in zip(chunk, results):
            for sink in here:
                if sink.write(frame, result) is False:
                    return False
        writer.put((chunk, None, results, now))
        return True

    affinity = pin_thread(engine_cores)  # put back when the loop ends
    try:
        active = list(readers)
        done = 0
        pending = None  # type: Any
        while active and (max_frames is None or done < max_frames):
            writer.check()
            if writer.stop_asked:
                return False
            batch = []  # type: List[Any]
            owners = []  # type: List[_Reader]
            for r in list(active):
                deadline = time.monotonic() + LIVE_WAIT_S if r.live else None
                item = None
                while item is None:
                    item = r.get(_TICK)
                    if item is None:
                        writer.check()
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                if item is _END:
                    active.remove(r)
                    if r.error is not None:
                        raise r.error
                elif item is not None:
                    batch.append(item)
                    owners.append(r)
            if max_frames is not None:
                batch = batch[: max_frames - done]
            if not batch:
                continue
            for start in range(0, len(batch), det.max_batch):
                chunk = batch[start:start + det.max_batch]
                ticket = det.submit_prepared([p for _, p in chunk])
                for (_, p), r in zip(chunk, owners[start:start + det.max_batch]):
                    r.give_back(p)
                if pending is not None and not finish(pending):
                    return False
                pending = (chunk, ticket)
            done += len(batch)
        if pending is not None and not finish(pending):
            return False
        writer.finish()
        writer.check()
        finished = True
        return not writer.stop_asked
    finally:
        stop.set()
        for r in readers:  # unblock a reader waiting on a full queue, then wait for it
            while r.is_alive():
                while r.get(0) is not None:
                    pass
                r.join(_TICK)
        if not finished:
            writer.finish()  # what already has a result is written (Ctrl-C included)
        stats.dropped += sum(r.dropped for r in readers)
        pin_thread(affinity)
        if progress is not None:
            progress.finish()
