"""gpu-node-validate load --device cuda:N|cuda:GPU-UUID|cpu [--size N] [--dtype D] [--window-ms MS]

The burn-in's load worker (module_utils/nvidia_gpu/burn_in*.py starts one per GPU): it reads
lines on stdin, each a whole percent from 0 to 100, and loads its device at that level until the
next line; at end of input it exits 0. Load is dense matrix products (fp16 on Volta's tensor
cores, bf16 where the GPU has it; fp32 on the CPU), large enough to hold a GPU at its power
limit, duty-cycled within windows of --window-ms: at 40 % the products run for 40 % of each
window, then the device idles, with a synchronize between windows so the duty cycle is real
work and not a queue. A reader thread takes the lines, so a new level applies within a window.

It prints `ready` on stdout once its matrices are allocated and timed, so that the driver can
switch every GPU at the same instant; what it says besides goes to stderr. A line that is not a
percent is reported and ignored. Exit codes: 0 end of input; 1 the device failed while loading
(a GPU that fell off the bus); 2 bad arguments; 3 no torch, no such device, no memory.
"""

import argparse
import os
import re
import sys
import threading
import time

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 0, 1, 2, 3
DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
# 8192^2 fp16 products hold a V100 (and an H100) at its power limit; 3 x 128 MiB of memory.
DEFAULT_SIZE = {"cuda": 8192, "cpu": 256}
SIZE_RANGE = (16, 65536)
WINDOW_RANGE_MS = (10, 10000)
_PERCENT = re.compile(r"[0-9]{1,3}\Z")
# Weight of the newest window when following the time per product (clocks drop at the cap).
FOLLOW = 0.3


class Level:
    """The latest level read from stdin and whether input ended, shared with the reader thread."""

    def __init__(self):
        self.changed = threading.Condition()
        self.percent = 0
        self.ended = False

    def set(self, percent=None, ended=False):
        with self.changed:
            if percent is not None:
                self.percent = percent
            self.ended = self.ended or ended
            self.changed.notify_all()

    def now(self):
        with self.changed:
            return self.percent, self.ended

    def wait(self, seconds):
        """Sleep up to seconds; a new line ends the sleep early."""
        with self.changed:
            self.changed.wait(seconds)


def read_levels(stream, level, complain):
    for number, line in enumerate(stream, 1):
        text = line.strip()
        if not text:
            continue
        if not _PERCENT.match(text) or int(text) > 100:
            complain(
                "stdin line %d: %r is not a whole percent from 0 to 100; ignored"
                % (number, text[:40])
            )
            continue
        level.set(int(text))
    level.set(ended=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="gpu-node-validate load",
        description="Load one device at the percent given by each stdin line (0-100) until end "
        "of input: the burn-in's load worker.",
    )
    parser.add_argument("--device", required=True, help="cpu, cuda, cuda:N or cuda:GPU-<uuid>")
    parser.add_argument("--size", type=int, help="matrix size n (default 8192 on GPUs, 256 on CPU)")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto")
    parser.add_argument("--window-ms", type=int, default=100, help="duty-cycle window (ms)")
    args = parser.parse_args(argv)
    match = re.fullmatch(r"cpu|cuda(?::([0-9]{1,3}|GPU-[0-9a-fA-F-]{8,64}))?", args.device)
    if not match:
        parser.error("--device %r: allowed: cpu, cuda, cuda:N or cuda:GPU-<uuid>" % args.device)
    args.kind = "cpu" if args.device == "cpu" else "cuda"
    args.which = match.group(1)
    if args.size is None:
        args.size = DEFAULT_SIZE[args.kind]
    if not SIZE_RANGE[0] <= args.size <= SIZE_RANGE[1]:
        parser.error("--size %d: allowed: %d to %d" % ((args.size, *SIZE_RANGE)))
    if not WINDOW_RANGE_MS[0] <= args.window_ms <= WINDOW_RANGE_MS[1]:
        parser.error("--window-ms %d: allowed: %d to %d" % ((args.window_ms, *WINDOW_RANGE_MS)))
    if args.kind == "cpu" and args.dtype == "fp16":
        parser.error("--dtype fp16 runs on GPUs only; allowed on the CPU: auto, bf16, fp32")
    return args


class Failed(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def open_device(args):
    """(torch, device, dtype name, description); Failed(3) when it cannot be used."""
    if args.which and args.which.startswith("GPU-"):
        # CUDA has no UUID device names; showing it only this GPU does it (before CUDA starts).
        os.environ["CUDA_VISIBLE_DEVICES"] = args.which
    try:
        import torch
    except ImportError as err:
        raise Failed(EXIT_ENVIRONMENT, "torch cannot be imported: %s" % err) from None
    if args.kind == "cpu":
        return torch, torch.device("cpu"), "fp32" if args.dtype == "auto" else args.dtype, "cpu"
    if not torch.cuda.is_available():
        raise Failed(EXIT_ENVIRONMENT, "torch sees no usable GPU (driver, CUDA_VISIBLE_DEVICES)")
    index = int(args.which) if args.which and not args.which.startswith("GPU-") else 0
    if index >= torch.cuda.device_count():
        raise Failed(
            EXIT_ENVIRONMENT,
            "%s: torch sees %d GPU(s)" % (args.device, torch.cuda.device_count()),
        )
    props = torch.cuda.get_device_properties(index)
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bf16" if props.major >= 8 else "fp16"
    if dtype == "bf16" and props.major < 8:
        raise Failed(
            EXIT_ENVIRONMENT, "%s (%s) has no bf16 tensor cores" % (args.device, props.name)
        )
    return torch, torch.device("cuda", index), dtype, "%s (%s)" % (args.device, props.name)


def run(args, level, say):
    torch, device, dtype, description = open_device(args)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    n = args.size
    try:
        a = torch.rand(n, n, device=device).to(getattr(torch, DTYPES[dtype]))
        b = torch.rand(n, n, device=device).to(a.dtype)
        c = torch.empty_like(a)
        for _ in range(2):
            torch.matmul(a, b, out=c)
        sync()
        started = time.monotonic()
        for _ in range(3):
            torch.matmul(a, b, out=c)
        sync()
    except RuntimeError as err:  # out of memory, a device already in a bad state
        raise Failed(EXIT_ENVIRONMENT, "%s: %s" % (description, str(err).splitlines()[0])) from None
    per_call_s = max((time.monotonic() - started) / 3, 1e-6)
    say(
        "load worker %s: %s %dx%d, %.2f ms per product (%.1f TFLOPS)"
        % (description, dtype, n, n, per_call_s * 1e3, 2 * n**3 / per_call_s / 1e12)
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    window_s = args.window_ms / 1000.0
    while True:
        percent, ended = level.now()
        if ended:
            return EXIT_OK
        if percent == 0:
            level.wait(window_s)
            continue
        began = time.monotonic()
        calls = max(1, round(window_s * percent / 100.0 / per_call_s))
        try:
            for _ in range(calls):
                torch.matmul(a, b, out=c)
            sync()
        except RuntimeError as err:
            raise Failed(
                EXIT_FAILED, "%s failed under load: %s" % (description, str(err).splitlines()[0])
            ) from None
        took = time.monotonic() - began
        per_call_s = (1 - FOLLOW) * per_call_s + FOLLOW * max(took / calls, 1e-6)
        rest = window_s - took
        if percent < 100 and rest > 0:
            level.wait(rest)


def main(argv=None):
    args = parse_args(argv)  # argparse exits 2 on bad arguments

    def say(message):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    level = Level()
    reader = threading.Thread(target=read_levels, args=(sys.stdin, level, say), daemon=True)
    try:
        reader.start()
        return run(args, level, say)
    except Failed as err:
        say("gpu-node-validate load: %s" % err)
        return err.code
    except KeyboardInterrupt:
        return 130
