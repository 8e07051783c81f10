# SPDX-License-Identifier: BSD-3-Clause
"""Array backend: which library and device an array lives on, and how to work there.

Every solver in convergent is written once against the Python Array API standard
and runs on whatever namespace its inputs come from: NumPy, CuPy, torch (CPU or
CUDA), or any other library that ``array-api-compat`` knows (``array_api_strict``
is the test namespace that proves the code uses the standard only). The rule is
scikit-learn's "everything follows X": secondary arrays are moved to the
namespace and device of the main input.

Beyond the standard, a few operations matter for speed and have no portable
spelling: writing a matrix product into a preallocated block, in-place
element-wise updates, row gathers. They are collected here, each with a
fast path for NumPy, CuPy and torch and a plain-standard fallback.

This module also owns memory budgets: how many bytes a solver may use on a
device, and how many rows of a block fit in them. CuPy and torch are imported
lazily, only when an input or a requested device needs them.

What a memory budget covers
---------------------------
``memory_budget`` bounds the memory a fit or a prediction uses *beyond its
data*: every array whose size grows with a kernel matrix or with the number of
centres (EigenPro's training-matrix chunks or its stored upper triangle, the
``s x s`` Nyström eigenproblem with the eigensolver's copies and workspace,
the held-out calibration matrix, the prediction blocks ``K(X_block,
centres)``) and the row blocks of the closed-form Gram, cross-moment and
prediction passes. It does not cover the data and what grows with them alone:
the inputs and the copies a fit keeps (EigenPro: the permuted points, their
mean-shifted copy, targets and coefficients; the closed-form estimators: a
floating copy of ``X`` and, for the networks, the ``n x width`` activations
and targets of the hidden layers, which the layerwise solves need whole), nor
the outputs. ``tests/eigenpro/test_memory.py`` and
``tests/closedform/test_memory.py`` measure it with :class:`MemoryPeak` on
data whose kernel matrix is 9 to 16 times the budget: the NumPy allocations
traced by :mod:`tracemalloc`, and the peak resident set of a fresh process
(which also holds LAPACK workspaces and allocator slack; 1 MiB allowed for
those), stay within ``1.1 (budget + inputs)``.
"""

from __future__ import annotations

import functools
import os
import re
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import array_api_compat as aac
import numpy as np

__all__ = [
    "MemoryPeak",
    "available_memory",
    "check_same_namespace",
    "cpu_threads",
    "fits_storage",
    "floating_dtype",
    "get_namespace_and_device",
    "map_row_chunks_",
    "matmul_into",
    "resolve_device",
    "resolve_memory_budget",
    "rows_per_block",
    "take_rows",
    "to_namespace",
    "to_numpy",
]

#: Fraction of the currently available memory that ``memory_budget="auto"`` uses.
AUTO_MEMORY_FRACTION = 0.75

_FALLBACK_HOST_MEMORY = 4 * 2**30


# --------------------------------------------------------------------------- #
# namespaces and devices
# --------------------------------------------------------------------------- #
def get_namespace_and_device(*arrays):
    """Return the array-API namespace and device shared by ``arrays``.

    ``None`` entries are ignored. NumPy arrays (and Python scalars or lists)
    resolve to the NumPy-compatible namespace of ``array-api-compat`` and
    device ``"cpu"``.

    Parameters
    ----------
    *arrays : arrays or None
        The arrays to inspect. They must come from a single library.

    Returns
    -------
    xp : module
        Array-API compatible namespace.
    device : object
        The device of the first array.
    """
    arrays = [a for a in arrays if a is not None]
    if not arrays:
        return aac.array_namespace(np.empty(0)), "cpu"
    arrays = [a if hasattr(a, "shape") else np.asarray(a) for a in arrays]
    for a in arrays:
        if getattr(a, "__module__", "").startswith("scipy.sparse") or hasattr(a, "tocsr"):
            raise TypeError(
                f"A SciPy sparse {type(a).__name__} was passed where a dense array is needed "
                "(these solvers compute dense kernel, Gram and gradient blocks): convert it "
                "with .toarray()."
            )
    xp = aac.array_namespace(*arrays)
    return xp, aac.device(arrays[0])


def check_same_namespace(estimator, method, X, fitted):
    """Raise unless ``X`` has the namespace and device of the fitted array ``fitted``.

    The error names the estimator's method, both namespaces and devices, and
    whether scikit-learn's ``array_api_dispatch`` is off (inputs then become
    NumPy before they reach the estimator).
    """
    x_xp, x_dev = get_namespace_and_device(X)
    a_xp, a_dev = get_namespace_and_device(fitted)
    if x_xp.__name__ == a_xp.__name__ and str(x_dev) == str(a_dev):
        return
    from sklearn import get_config

    dispatch = get_config()["array_api_dispatch"]
    raise ValueError(
        f"Inputs passed to {type(estimator).__name__}.{method}() must use the same namespace "
        f"and the same device as those passed to fit(). The estimator was fitted on "
        f"{a_xp.__name__} arrays on {a_dev}, and {method} got {x_xp.__name__} arrays "
        f"on {x_dev}"
        + ("" if dispatch else " (array_api_dispatch is off, so inputs become NumPy)")
        + ". Pass arrays of the fitted kind"
        + (
            ", or set device= to move inputs automatically."
            if hasattr(estimator, "device")
            else "."
        )
    )


def namespace_kind(xp):
    """Short name of the library behind ``xp``: numpy, cupy, torch or other."""
    if aac.is_numpy_namespace(xp):
        return "numpy"
    if aac.is_cupy_namespace(xp):
        return "cupy"
    if aac.is_torch_namespace(xp):
        return "torch"
    return "other"


def device_type(device):
    """``"cpu"`` or ``"cuda"`` (or the library's own name) for a device object."""
    if device is None:
        return "cpu"
    if hasattr(device, "type"):  # torch.device
        return device.type
    if type(device).__module__.startswith("cupy"):
        return "cuda"
    text = str(device).lower()
    return "cuda" if text.startswith("cuda") else "cpu" if "cpu" in text else text


def resolve_device(device):
    """Namespace and device object for a user's ``device`` option.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"`` (NumPy), ``"cuda"``/``"cuda:1"`` (torch when installed, else
        CuPy), ``"torch"``/``"torch:cuda:0"`` or ``"cupy"``/``"cupy:1"`` to
        choose the library explicitly, or a ``torch.device``.

    Returns
    -------
    xp : module
    device : object
    """
    if hasattr(device, "type") and type(device).__module__.startswith("torch"):
        import torch

        return aac.array_namespace(torch.empty(0)), device
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda'; got {device!r}")
    spec = device.strip().lower()
    match = re.fullmatch(r"(?:(torch|cupy):?)?(cpu|cuda)?(?::?(\d+))?", spec)
    if spec == "" or match is None:
        raise ValueError(
            f"Unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N', "
            "'torch:cpu', 'torch:cuda:N' or 'cupy:N'."
        )
    library, kind, index = match.groups()
    if library is None and (kind in (None, "cpu")) and index is None:
        return aac.array_namespace(np.empty(0)), "cpu"
    if library == "cupy" or (library is None and not _torch_cuda_available()):
        if kind == "cpu":
            raise ValueError("CuPy has no CPU device; use device='cpu' for NumPy.")
        try:
            import cupy
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise ValueError(
                f"device={device!r} needs torch with CUDA or CuPy; neither is "
                "available. Install the 'cuda12'/'cuda13' or 'torch' extra."
            ) from exc
        return aac.array_namespace(cupy.empty(0)), cupy.cuda.Device(int(index or 0))
    try:
        import torch
    except ImportError as exc:
        raise ValueError(f"device={device!r} needs torch, which is not installed.") from exc
    kind = kind or "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but no CUDA device is visible.")
    dev = torch.device(kind if index is None else f"{kind}:{index}")
    return aac.array_namespace(torch.empty(0)), dev


def _torch_cuda_available():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def to_numpy(x):
    """Copy (or view) any supported array as a NumPy array on the host."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if aac.is_cupy_array(x):
        return x.get()
    if aac.is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, RuntimeError, ValueError):
        pass
    # A library's non-default device (array_api_strict's test devices, say):
    # move to its default (host) device, then share the buffer via DLPack.
    xp = aac.array_namespace(x)
    host = x.to_device(aac.device(xp.empty(0)))
    return np.from_dlpack(host)


def to_namespace(x, xp, device=None):
    """Move ``x`` to namespace ``xp`` on ``device`` (no copy when already there).

    DLPack is tried first (zero-copy between libraries on one device); a round
    trip through NumPy is the fallback.
    """
    if x is None:
        return None
    if hasattr(x, "shape") and not isinstance(x, np.generic):
        try:
            src_xp, src_dev = get_namespace_and_device(x)
        except TypeError:
            src_xp = src_dev = None
        if src_xp is not None and src_xp.__name__ == xp.__name__:
            if device is None or _same_device(src_dev, device):
                return x
            return aac.to_device(x, device)
    kind = namespace_kind(xp)
    if kind == "numpy":
        return to_numpy(x)
    if kind == "torch" and aac.is_numpy_array(x) and x.flags.writeable:
        import torch

        return torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if kind == "cupy":
        import cupy

        with cupy.cuda.Device(_cupy_index(device)):
            if aac.is_torch_array(x) and x.device.type == "cuda":
                return cupy.from_dlpack(x.detach())
            return cupy.asarray(to_numpy(x))
    if kind == "torch" and aac.is_cupy_array(x):
        import torch

        return torch.from_dlpack(x).to(device)
    return xp.asarray(to_numpy(x), device=device)


def _cupy_index(device):
    return getattr(device, "id", 0) if device is not None else 0


def _same_device(a, b):
    return str(a) == str(b) or (device_type(a) == device_type(b) == "cpu")


def floating_dtype(xp, x, device=None):
    """Floating dtype to compute in: ``x``'s own if it is real floating, else float64.

    Devices without float64 support (Apple MPS) get float32.
    """
    if xp.isdtype(x.dtype, "real floating"):
        return x.dtype
    if namespace_kind(xp) == "torch" and device_type(device) == "mps":
        return xp.float32
    return xp.float64


def itemsize(xp, dtype):
    """Bytes per element of ``dtype``."""
    return int(xp.finfo(dtype).bits // 8) if xp.isdtype(dtype, "real floating") else 8


# --------------------------------------------------------------------------- #
# memory budgets
# --------------------------------------------------------------------------- #
def available_memory(xp=None, device=None):
    """Bytes that can be allocated now on ``device`` (host RAM for CPU devices).

    GPU: the driver's free memory (plus, for torch, what its caching allocator
    holds but does not use). Host: ``MemAvailable`` from ``/proc/meminfo``,
    capped by a cgroup memory limit when one is set; 4 GiB when neither can be
    read.
    """
    kind = namespace_kind(xp) if xp is not None else "numpy"
    if device_type(device) == "cuda":
        if kind == "torch":
            import torch

            free, _ = torch.cuda.mem_get_info(device)
            reserved = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(free + reserved)
        if kind == "cupy":
            import cupy

            with cupy.cuda.Device(_cupy_index(device)):
                free, _ = cupy.cuda.runtime.memGetInfo()
                pool = cupy.get_default_memory_pool()
                return int(free + pool.free_bytes())
    return _host_available_memory()


def _host_available_memory():
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:  # cgroup v2 limit (containers)
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            room = int(limit) - used
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = _FALLBACK_HOST_MEMORY
    return int(max(avail, 0))


def resolve_memory_budget(budget, xp=None, device=None):
    """Turn a user's ``memory_budget`` into bytes.

    Parameters
    ----------
    budget : "auto", float or int
        ``"auto"`` (or None): ``AUTO_MEMORY_FRACTION`` (75 %) of the memory
        available on the device now. A number in (0, 1]: that fraction of the
        available memory. A number > 1: bytes.

    Returns
    -------
    int
        The budget in bytes (at least 1 MiB).
    """
    if budget is None or (isinstance(budget, str) and budget == "auto"):
        return max(int(AUTO_MEMORY_FRACTION * available_memory(xp, device)), 2**20)
    if isinstance(budget, str) or not np.isfinite(budget) or budget <= 0:
        raise ValueError(
            f"memory_budget must be 'auto', a fraction in (0, 1] or a number of bytes; "
            f"got {budget!r}."
        )
    if budget <= 1:
        return max(int(budget * available_memory(xp, device)), 2**20)
    return int(budget)


def fits_storage(need_bytes, budget, precompute, what):
    """Whether to store a matrix of ``need_bytes``: the rule every solver shares.

    ``precompute="auto"`` stores it when it takes at most 90 % of ``budget``;
    True stores it or raises ``MemoryError`` naming ``what``; False never does.
    """
    fits = need_bytes <= 0.9 * budget
    if precompute is True and not fits:
        raise MemoryError(
            f"Storing {what} needs {need_bytes / 2**30:.2f} GiB, more than 90% of the memory "
            f"budget ({budget / 2**30:.2f} GiB); raise memory_budget or let the solver "
            "decide (precompute 'auto')."
        )
    return precompute is True or (precompute == "auto" and fits)


def rows_per_block(n_cols, bytes_per_item, budget, *, n_buffers=1, min_rows=1, max_rows=None):
    """How many rows of an ``(rows, n_cols)`` block fit ``n_buffers`` times in ``budget``."""
    per_row = max(int(n_cols) * int(bytes_per_item) * int(n_buffers), 1)
    rows = max(int(budget) // per_row, int(min_rows))
    if max_rows is not None:
        rows = min(rows, int(max_rows))
    return max(rows, 1)


class MemoryPeak:
    """Peak host memory of a block of code, as a context manager.

    ``traced``: the peak of the memory :mod:`tracemalloc` traces (Python
    objects and NumPy's array data) above its level on entry; None unless
    ``trace=True``. ``resident``: the process's peak resident set (``VmHWM``,
    reset on entry through ``/proc/self/clear_refs``) above its resident set
    on entry (after giving the C allocator's free memory back), which also
    counts what tracemalloc does not see (LAPACK workspaces, torch, allocator
    slack); None where the high-water mark cannot be reset (not Linux).
    Tracing slows allocations and adds its own memory to the resident set,
    so measure one or the other::

        with MemoryPeak() as peak:
            estimator.fit(X, y)
        peak.resident

    Parameters
    ----------
    trace : bool, default=False
        Measure with :mod:`tracemalloc` (else the resident set).
    """

    def __init__(self, trace=False):
        self.trace = trace
        self.traced = None
        self.resident = None

    def __enter__(self):
        if self.trace:
            self._started = not tracemalloc.is_tracing()
            if self._started:
                tracemalloc.start()
            self._base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        else:
            self._base = _reset_peak_resident()
        return self

    def __exit__(self, *exc):
        if self.trace:
            self.traced = tracemalloc.get_traced_memory()[1] - self._base
            if self._started:
                tracemalloc.stop()
        elif self._base is not None:
            peak = _proc_status("VmHWM")
            self.resident = None if peak is None else peak - self._base
        return False


def _proc_status(key):
    """A memory field of ``/proc/self/status`` in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_resident():
    """Reset ``VmHWM`` to the current resident set and return it (None if impossible).

    Memory freed earlier but kept by the C allocator is first given back
    (glibc ``malloc_trim``), so that the block measured cannot reuse it unseen.
    """
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _proc_status("VmRSS")


# --------------------------------------------------------------------------- #
# fast operations with no portable spelling
# --------------------------------------------------------------------------- #
def matmul_into(a, b, out):
    """``out[...] = a @ b`` without a temporary where the library allows it."""
    if isinstance(out, np.ndarray):
        return np.matmul(a, b, out=out)
    if aac.is_torch_array(out):
        import torch

        if out.is_contiguous():
            return torch.matmul(a, b, out=out)
        out.copy_(a @ b)
        return out
    if aac.is_cupy_array(out):
        import cupy

        return cupy.matmul(a, b, out=out)
    out[...] = a @ b
    return out


def take_rows(xp, x, idx):
    """``x[idx]`` for an integer index array (the fastest gather per library)."""
    if namespace_kind(xp) in ("numpy", "cupy", "torch"):
        return x[idx]
    return xp.take(x, idx, axis=0)


@functools.lru_cache(maxsize=1)
def cpu_threads():
    """Number of CPU cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - non-Linux
        return max(os.cpu_count() or 1, 1)


@functools.lru_cache(maxsize=1)
def _thread_pool():
    return ThreadPoolExecutor(max_workers=cpu_threads(), thread_name_prefix="convergent")


if hasattr(os, "register_at_fork"):  # a forked child must not reuse the parent's threads
    os.register_at_fork(after_in_child=_thread_pool.cache_clear)


#: Elements per chunk of a threaded element-wise pass (about 1 MiB of float32,
#: so the chained passes of one chunk stay in the core's L2 cache).
CHUNK_ELEMENTS = 1 << 18


def map_row_chunks_(fn, x):
    """Apply ``fn(chunk, start, stop)`` to row chunks of the 2-D array ``x`` in place.

    NumPy's element-wise functions run on one core and release the GIL, so for
    NumPy arrays the chunks are spread over a thread pool with one thread per
    core, each chunk small enough for the chained passes to stay in cache.
    Other libraries parallelise (or run on a GPU) by themselves and get one
    call over the whole array.
    """
    n_rows = x.shape[0]
    if not isinstance(x, np.ndarray) or x.size < 2 * CHUNK_ELEMENTS or n_rows < 2:
        fn(x, 0, n_rows)
        return x
    step = max(CHUNK_ELEMENTS // max(x.shape[1], 1), 1)
    starts = range(0, n_rows, step)
    futures = [_thread_pool().submit(fn, x[s : s + step], s, min(s + step, n_rows)) for s in starts]
    for fut in futures:
        fut.result()
    return x


def inplace(xp, x, name, *args):
    """Apply element-wise function ``name`` (exp, sqrt, ...) to ``x`` in place.

    Returns ``x`` (or a new array for namespaces that cannot write in place).
    """
    kind = namespace_kind(xp)
    if kind == "numpy":
        return getattr(np, name)(x, *args, out=x)
    if kind == "cupy":
        import cupy

        return getattr(cupy, name)(x, *args, out=x)
    if kind == "torch":
        torch_name = {"maximum": "clamp_min_", "minimum": "clamp_max_", "reciprocal": "reciprocal_"}
        method = torch_name.get(name, name + "_")
        return getattr(x, method)(*args)
    dev = aac.device(x)
    x[...] = getattr(xp, name)(x, *[xp.asarray(a, dtype=x.dtype, device=dev) for a in args])
    return x
