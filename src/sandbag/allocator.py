"""CPU settings for training processes (the CLI, `fit`, study workers, Ray tasks, torchrun ranks): glibc allocator
tuning and flushing denormal floats to zero."""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager

# mallopt parameter (malloc.h) -> value. glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit machines.
GLIBC_MALLOC_SETTINGS = {-3: 32 * 2**20, -2: 64 * 2**20, -1: 2**30}  # mmap threshold, top pad, trim threshold
_allocator_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep freed activation buffers in glibc's heap instead of handing them back to the OS after every step.

    With glibc's defaults each large activation at batch 128-256 is a fresh mmap (or is trimmed off the heap top when
    freed), so it is page-faulted in again on every step: ~300,000 minor faults per mnist-5k epoch at batch 256. A fixed
    mmap threshold above ref-cnn's largest activation (22 MB at batch 256), a top pad, and a trim threshold above
    what one step frees bring that to zero (measured 1.3-1.5x samples/s; benchmarks/throughput.py runs the plain loop
    with glibc's defaults and sandbag with this, each in its own process). The peak memory is unchanged: freed
    memory is kept for the next step instead of being returned. Called by `fit` and the CLI; once per process.
    ``SANDBAG_TUNE_MALLOC=0`` in the environment turns it off. Returns whether the settings are in effect."""
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = os.environ.get("SANDBAG_TUNE_MALLOC", "1") != "0" and mallopt(GLIBC_MALLOC_SETTINGS)
    return _allocator_tuned


def mallopt(settings: dict[int, int]) -> bool:
    """Apply glibc ``mallopt(param, value)`` settings; False where this is not Linux with glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    return all([bool(libc.mallopt(param, value)) for param, value in settings.items()])



@contextmanager
def denormals_flushed():
    """Within: denormal floats (|x| < 1.2e-38) count as zero on this thread's CPU (x86 FTZ/DAZ; nothing elsewhere).

    Once an unregularized model fits its training set, many gradients and Adam moments decay into the denormal range,
    where x86 arithmetic is many times slower: measured on ref-cnn at batch 4 on mnist-5k (500 images, 1 thread),
    epochs went from 0.50 s to 0.75 s after the sixth epoch without this, and stayed at 0.48 s with it. Values that
    small change no prediction. The setting is the thread's (torch's intra-op threads of a multi-threaded run keep
    the default) and is undone on the way out, so a caller's own process state is left as it was (hypothesis, for
    one, refuses to run with it). Used as a decorator by `fit`, `fit_seeds` and the timing phase."""
    import torch

    already = _flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not already:
            torch.set_flush_denormal(False)


def _flushed() -> bool:
    import torch

    return bool(torch.tensor(1e-39) * 1.0 == 0)  # a float32 denormal reads as zero when they are flushed
