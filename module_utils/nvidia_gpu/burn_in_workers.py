"""The load workers: one long-running process per GPU that loads it as told.

Protocol: the worker reads lines on stdin, each a whole percent from 0 to 100, and loads its GPU
at that level until the next line; at end of input it stops and exits 0. It may print `ready` on
stdout once it can load at once (the start waits for that, or for worker_start_s); anything else
it prints is kept (the last lines) to explain a worker that exits.

Workers run in their own session: a Ctrl-C in the terminal reaches the driver only, which tells
them 0 and stops them; if the driver dies, their stdin closes and they exit on their own.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time

from .identity import gpu_label

TAIL_LINES = 20
# After "0" and end of input: how long a worker gets to exit, then SIGTERM, then SIGKILL.
STOP_GRACE_S = 10
TERM_GRACE_S = 3


class WorkerError(Exception):
    """A worker could not be started or died before the load began (exit 3)."""


class Worker:
    """One GPU's load worker."""

    def __init__(self, gpu, argv, env):
        self.gpu = gpu  # {"index", "uuid"}
        self.argv = argv
        self.level = None
        self.ready = threading.Event()
        self.tail = collections.deque(maxlen=TAIL_LINES)
        self.broken = None  # why the last write failed
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        except (OSError, ValueError) as error:
            raise WorkerError(
                "the load worker of %s cannot start: %s: %s"
                % (label(gpu), " ".join(argv), getattr(error, "strerror", None) or error)
            ) from error
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with contextlib.suppress(OSError, ValueError):
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                if line.strip() == "ready":
                    self.ready.set()
                elif line.strip():
                    self.tail.append(line[:500])

    def alive(self):
        return self.proc.poll() is None

    def set(self, percent):
        """Send a level; False when the worker no longer reads (it exited)."""
        try:
            self.proc.stdin.write("%d\n" % percent)
            self.proc.stdin.flush()
        except (OSError, ValueError) as error:
            self.broken = str(error)
            return False
        self.level = percent
        return True

    def end_input(self):
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()

    def signal(self, number):
        # The worker leads its own process group: its children go with it.
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, number)

    def record(self):
        """What the report says about this worker."""
        self.reader.join(timeout=1)
        return {
            "gpu": self.gpu["index"],
            "uuid": self.gpu["uuid"],
            "argv": self.argv,
            "exit_status": self.proc.poll(),
            "output_tail": list(self.tail),
        }

    def exit_text(self):
        """'exited with status 1: <last line>' for messages."""
        status = self.proc.poll()
        how = (
            "was killed by signal %d" % -status
            if status is not None and status < 0
            else "exited with status %s" % status
        )
        last = list(self.tail)[-3:]
        return how + (": " + " | ".join(last) if last else " (no output)")


def label(gpu):
    return gpu_label(gpu["index"], gpu["uuid"])


def worker_env():
    env = dict(os.environ)
    # CUDA numbers GPUs fastest first unless told; NVML (and {index}) in PCI bus order.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


def start(gpus, argvs, wait_s, stop_event):
    """Start one worker per GPU and wait until all print "ready" or wait_s passes.

    Raises WorkerError naming the GPU when one cannot start or exits in that time (the others
    are stopped first). stop_event (set by a signal) ends the wait early.
    """
    workers = []
    try:
        for gpu, argv in zip(gpus, argvs):
            workers.append(Worker(gpu, argv, worker_env()))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not stop_event.is_set():
            for worker in workers:
                if not worker.alive():
                    worker.reader.join(timeout=1)
                    raise WorkerError(
                        "the load worker of %s (%s) %s"
                        % (label(worker.gpu), " ".join(worker.argv), worker.exit_text())
                    )
            if all(worker.ready.is_set() for worker in workers):
                break
            stop_event.wait(0.05)
    except BaseException:
        stop(workers)
        raise
    return workers


def set_all(workers, percent):
    """Every live worker to percent, one right after the other (lock-step).
    Returns the workers that no longer read."""
    return [worker for worker in workers if worker.alive() and not worker.set(percent)]


def stop(workers):
    """Load 0, end of input, wait; then SIGTERM, then SIGKILL. Whatever state they are in."""
    for worker in workers:
        if worker.alive():
            worker.set(0)
        worker.end_input()
    _wait(workers, STOP_GRACE_S)
    for number, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, TERM_GRACE_S)):
        left = [worker for worker in workers if worker.alive()]
        if not left:
            break
        for worker in left:
            worker.signal(number)
        _wait(left, grace)


def _wait(workers, grace_s):
    deadline = time.monotonic() + grace_s
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
