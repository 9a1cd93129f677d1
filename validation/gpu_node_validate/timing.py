"""Timing of device work: CUDA events on GPUs (the host clock would measure launch, not work),
the host clock on the CPU."""

import time


def synchronize(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _elapsed_s(torch, device, fn, calls):
    if device.type == "cuda":
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - begin


def seconds_per_call(torch, device, fn, warmup, iterations, max_time_s=None):
    """(seconds per call of fn after warm-up, calls timed). With max_time_s, fewer calls are
    timed when one call is slow (fp64 on a consumer GPU), so a run stays bounded."""
    for _ in range(warmup):
        fn()
    synchronize(torch, device)
    if max_time_s is not None and iterations > 1:
        one_s = _elapsed_s(torch, device, fn, 1)
        iterations = max(1, min(iterations, int(max_time_s / max(one_s, 1e-9))))
    return _elapsed_s(torch, device, fn, iterations) / iterations, iterations
