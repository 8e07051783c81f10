# SPDX-License-Identifier: BSD-3-Clause
"""The library's one layer over ``torch.distributed``: :class:`Communicator`.

Estimators that fit on rows spread over several processes (each rank passes
its own rows) reduce their sums over samples through a :class:`Communicator`:
gloo on CPU, NCCL on GPU, whatever backend the process group was created
with. The layer adds three things to the raw collectives:

- **any array kind**: NumPy arrays travel through ``torch.from_numpy`` (on
  the GPU for NCCL), torch tensors as they are, CuPy arrays through DLPack;
  the result comes back in the input's kind, device and dtype (float64
  stays float64);
- **no rank left waiting**: :meth:`Communicator.agree`,
  :meth:`Communicator.check_nonempty` and :meth:`Communicator.raise_together`
  make a bad input on one rank raise the same error on every rank, and a
  collective that fails (another rank raised, exited or stalled past the
  process group's ``timeout``) raises a ``RuntimeError`` naming the
  collective, with the backend's error chained;
- **a byte count** (:attr:`Communicator.bytes_sent`) that tests compare with
  the communication volume an algorithm claims.

``Communicator(None)`` is the single process: every collective is the
identity, so code written against a communicator runs unchanged without
``torch.distributed`` (and without importing torch).
"""

from __future__ import annotations

import contextlib
import json
import sys

import numpy as np

__all__ = [
    "Communicator",
    "ProcessGroupParamMixin",
    "process_group_constraint",
    "resolve_process_group",
]

# dtypes an all_gather_rows header can name, by index
_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex128",
    "complex64",
)
#: entries of the int64 header :meth:`Communicator.all_gather_rows` gathers first
HEADER_LENGTH = 8
#: trailing dimensions the header can describe
_MAX_TRAILING = HEADER_LENGTH - 3


def _dist():
    import torch.distributed as dist

    return dist


def resolve_process_group(value, name="process_group"):
    """The process group ``value`` names: None, or a ``torch.distributed.ProcessGroup``.

    Parameters
    ----------
    value : None, "world" or torch.distributed.ProcessGroup
        None: a single process. ``"world"``: the default group, which needs
        ``torch.distributed.init_process_group`` to have run.
    name : str, default="process_group"
        The argument's name, for the messages.

    Returns
    -------
    None or torch.distributed.ProcessGroup

    Raises
    ------
    TypeError
        ``value`` is of another type.
    ValueError
        Another string, or ``"world"`` while ``torch.distributed`` is not
        initialised.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value != "world":
            raise ValueError(f"{name} must be None, 'world' or a ProcessGroup; got {value!r}.")
        dist = _dist()
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                f"{name}='world' needs torch.distributed.init_process_group to have run "
                "in this process (e.g. under torchrun)."
            )
        return dist.group.WORLD
    if _is_process_group(value):
        return value
    raise TypeError(
        f"{name} must be None, 'world' or a torch.distributed.ProcessGroup; "
        f"got {type(value).__name__}."
    )


def _is_process_group(value):
    # a ProcessGroup exists only once torch.distributed is imported: no import needed to refuse
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and isinstance(value, dist.ProcessGroup)


def process_group_constraint():
    """The ``_parameter_constraints`` entry of a ``process_group`` parameter.

    Accepts None, ``"world"`` and ``ProcessGroup`` objects (checked without
    importing torch); whether ``"world"`` is initialised is checked at fit.
    """
    from sklearn.utils._param_validation import HasMethods, StrOptions

    class _ProcessGroups(HasMethods):  # a kind scikit-learn's make_constraint passes through
        def __init__(self):
            super().__init__(["rank", "size"])

        def is_satisfied_by(self, val):
            return _is_process_group(val)

        def __str__(self):
            return "a torch.distributed.ProcessGroup"

    return [None, StrOptions({"world"}), _ProcessGroups()]


class ProcessGroupParamMixin:
    """scikit-learn plumbing for an estimator with a ``process_group`` parameter.

    A ``ProcessGroup`` is a handle on live connections: it can be neither
    deep-copied nor pickled. ``clone`` shares it (the clone fits in the same
    group) and pickling replaces it by None (a process group does not outlive
    its processes); ``"world"`` survives both. A pickle from before the
    parameter existed loads with ``process_group=None``.
    """

    def __sklearn_clone__(self):
        from sklearn.base import _clone_parametrized

        group = getattr(self, "process_group", None)
        if group is None or isinstance(group, str):
            return _clone_parametrized(self)
        self.process_group = None
        try:
            clone = _clone_parametrized(self)
        finally:
            self.process_group = group
        clone.process_group = group
        return clone

    def __getstate__(self):
        parent = getattr(super(), "__getstate__", None)
        state = parent() if parent is not None else dict(self.__dict__)
        if _is_process_group(state.get("process_group")):
            state = {**state, "process_group": None}
        return state

    def __setstate__(self, state):
        # a pickle from before the parameter existed fits in one process
        state.setdefault("process_group", None)
        parent = getattr(super(), "__setstate__", None)
        if parent is not None:
            parent(state)
        else:
            self.__dict__.update(state)

    def _communicator(self):
        """The :class:`Communicator` of ``process_group`` (checked, with clear errors)."""
        return Communicator(self.process_group)


class Communicator:
    """Collectives over a process group, on any array kind; the identity for one process.

    Parameters
    ----------
    group : None, "world" or torch.distributed.ProcessGroup, default=None
        None: a single process (rank 0 of 1; every collective returns its
        input). See :func:`resolve_process_group`.

    Attributes
    ----------
    group : None or torch.distributed.ProcessGroup
    rank : int
        This process's rank in ``group``.
    world_size : int
    bytes_sent : int
        Payload bytes this rank has handed to collectives so far (0 for a
        single process): for :meth:`all_reduce_sum`, :meth:`all_reduce_max`
        and a :meth:`broadcast` from this rank, the ``nbytes`` of the tensor
        it contributes (the input converted to a tensor, on the backend's
        device); a broadcast received counts 0; for :meth:`all_gather_rows`,
        a header of :data:`HEADER_LENGTH` int64 (64 bytes) plus its rows
        padded to the largest row count of the ranks (``max_rows x
        row_size x itemsize``, the buffer gloo and NCCL send).
        :meth:`agree`, :meth:`check_nonempty` and :meth:`raise_together` are
        ``all_gather_rows`` of small byte strings and count as such. What the
        backend sends on the wire (ring steps, headers) is not counted.
    """

    def __init__(self, group=None):
        self.group = resolve_process_group(group, "group")
        if self.group is None:
            self.rank, self.world_size = 0, 1
        else:
            dist = _dist()
            self.rank = dist.get_rank(self.group)
            self.world_size = dist.get_world_size(self.group)
        self.bytes_sent = 0

    @property
    def distributed(self):
        """Whether this communicator spans a process group (even of one rank)."""
        return self.group is not None

    def __repr__(self):
        return f"Communicator(rank={self.rank}, world_size={self.world_size})"

    # -- array plumbing ----------------------------------------------------------------------
    def _device(self):
        import torch

        if _dist().get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return None

    def _to_tensor(self, array, copy=True):
        """``(tensor, back)``: a contiguous tensor to hand to a collective, and its way back."""
        import torch

        if isinstance(array, (bool, int, float, np.generic)) and not isinstance(array, np.ndarray):
            scalar = type(array.item() if isinstance(array, np.generic) else array)
            t = torch.as_tensor(np.asarray(array))
            return self._on_device(t), lambda r: scalar(r.cpu().item())
        if isinstance(array, np.ndarray):
            t = torch.from_numpy(np.array(array, order="C", copy=True))
            return self._on_device(t), lambda r: r.cpu().numpy()
        if isinstance(array, torch.Tensor):
            t = array.detach().contiguous()
            if copy:
                t = t.clone()
            moved = self._on_device(t)
            device = array.device
            return moved, lambda r: r.to(device)
        if type(array).__module__.split(".")[0] == "cupy":
            import cupy

            t = torch.from_dlpack(cupy.ascontiguousarray(array)).clone()
            return t, lambda r: cupy.from_dlpack(r)
        raise TypeError(
            "Communicator collectives take NumPy arrays, torch tensors, CuPy arrays or "
            f"Python numbers; got {type(array).__name__}."
        )

    def _on_device(self, t):
        device = self._device()
        return t if device is None or t.device == device else t.to(device)

    def _run(self, what, collective, call):
        """Run ``call()``; a backend failure becomes a RuntimeError naming the collective."""
        try:
            return call()
        except RuntimeError as err:
            raise RuntimeError(
                f"{what} (torch.distributed.{collective} over {self.world_size} ranks, this is "
                f"rank {self.rank}) failed: another rank of the process group raised, exited "
                f"or stalled past the group's timeout. Backend error: {err}"
            ) from err

    # -- collectives -------------------------------------------------------------------------
    def all_reduce_sum(self, array, what="Summing over ranks"):
        """The sum of ``array`` over the ranks, in its kind, device and dtype.

        Parameters
        ----------
        array : ndarray, torch.Tensor, CuPy array or Python number
            The same shape and dtype on every rank: other shapes abort in the
            backend (gloo terminates the process), so settle them first with
            :meth:`agree`.
        what : str
            What the sum is for (the error message's first words).

        Returns
        -------
        The sum; a new array (the input is not modified), or the input
        itself for a single process.
        """
        return self._all_reduce(array, "SUM", what)

    def all_reduce_max(self, array, what="Taking the maximum over ranks"):
        """The entrywise maximum of ``array`` over the ranks (as :meth:`all_reduce_sum`)."""
        return self._all_reduce(array, "MAX", what)

    def _all_reduce(self, array, op, what):
        if self.group is None:
            return array
        dist = _dist()
        t, back = self._to_tensor(array)
        self.bytes_sent += t.numel() * t.element_size()
        reduce_op = getattr(dist.ReduceOp, op)
        self._run(what, "all_reduce", lambda: dist.all_reduce(t, op=reduce_op, group=self.group))
        return back(t)

    def broadcast(self, array, src=0, what="Broadcasting"):
        """``array`` as rank ``src`` holds it (the same shape and dtype on every rank).

        Parameters
        ----------
        array : ndarray, torch.Tensor or CuPy array
        src : int, default=0
            The source's rank in the group.
        what : str

        Returns
        -------
        The source's values, in this rank's array kind (a new array).
        """
        if self.group is None:
            return array
        dist = _dist()
        t, back = self._to_tensor(array)
        if self.rank == src:
            self.bytes_sent += t.numel() * t.element_size()
        source = dist.get_global_rank(self.group, src)
        self._run(what, "broadcast", lambda: dist.broadcast(t, src=source, group=self.group))
        return back(t)

    def all_gather_rows(self, array, what="Gathering rows"):
        """Every rank's rows, concatenated along axis 0 in rank order.

        The ranks may hold different row counts (0 included); the trailing
        shape and the dtype must agree (else a ValueError on every rank).
        Two collectives: an int64 header (rows, trailing shape, dtype), then
        the rows padded to the largest count.

        Parameters
        ----------
        array : ndarray, torch.Tensor or CuPy array of at least one dimension
        what : str

        Returns
        -------
        The concatenation, in this rank's array kind.
        """
        if self.group is None:
            return array
        import torch

        dist = _dist()
        t, back = self._to_tensor(array, copy=False)
        if t.ndim < 1 or t.ndim - 1 > _MAX_TRAILING:
            raise ValueError(
                f"all_gather_rows takes arrays of 1 to {_MAX_TRAILING + 1} dimensions; "
                f"got {t.ndim}."
            )
        dtype = str(t.dtype).removeprefix("torch.")
        header = [t.shape[0], t.ndim, _DTYPES.index(dtype), *t.shape[1:]]
        header += [-1] * (HEADER_LENGTH - len(header))
        mine = torch.tensor(header, dtype=torch.int64, device=t.device)
        headers = [torch.empty_like(mine) for _ in range(self.world_size)]
        self.bytes_sent += mine.numel() * mine.element_size()
        self._run(what, "all_gather", lambda: dist.all_gather(headers, mine, group=self.group))
        headers = [h.cpu().tolist() for h in headers]
        if len({tuple(h[1:]) for h in headers}) > 1:
            shapes = ", ".join(
                f"rank {r}: {_DTYPES[h[2]]} (n, {', '.join(str(d) for d in h[3 : 2 + h[1]])})"
                for r, h in enumerate(headers)
            )
            raise ValueError(f"{what}: the ranks hold rows of other shapes or dtypes ({shapes}).")
        counts = [h[0] for h in headers]
        longest = max(counts)
        padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        self.bytes_sent += padded.numel() * padded.element_size()
        self._run(what, "all_gather", lambda: dist.all_gather(parts, padded, group=self.group))
        return back(torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]))

    # -- small values and checks that raise on every rank -------------------------------------
    def all_gather_json(self, value, what="Gathering values"):
        """Every rank's JSON-serialisable ``value`` (small: labels, counts), in rank order.

        Travels as UTF-8 bytes through :meth:`all_gather_rows`.
        """
        if self.group is None:
            return [value]
        # each rank's value in a one-element list, so that the concatenation splits unambiguously
        payload = np.frombuffer(json.dumps([value]).encode(), dtype=np.uint8)
        return _split_json(bytes(self.all_gather_rows(payload, what)))

    def agree(self, what, **facts):
        """Raise the same ValueError on every rank unless all ranks pass the same ``facts``.

        Parameters
        ----------
        what : str
            Who checks (e.g. ``"ManifoldNetClassifier.fit"``), for the message.
        **facts
            Small JSON-serialisable values (ints, strings, dtype names, lists).

        Raises
        ------
        ValueError
            Naming each fact that differs and every rank's value of it.
        """
        if self.group is None:
            return
        seen = self.all_gather_json(facts, f"{what}: comparing {', '.join(facts)} across ranks")
        problems = []
        for name in facts:
            values = [s.get(name) for s in seen]
            if any(v != values[0] for v in values):
                each = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
                problems.append(f"{name} differs across the ranks of the process group ({each})")
        if problems:
            raise ValueError(f"{what}: " + "; ".join(problems) + ".")

    def row_counts(self, n_rows, what="Counting rows"):
        """Every rank's row count, in rank order (``[n_rows]`` for one process)."""
        if self.group is None:
            return [int(n_rows)]
        return [int(c) for c in self.all_gather_json(int(n_rows), what)]

    def check_nonempty(self, n_rows, name="X", what="Checking the row counts"):
        """Raise a ValueError on every rank when any rank holds no rows; the counts.

        Returns
        -------
        counts : list of int
            Every rank's row count, in rank order.
        """
        counts = self.row_counts(n_rows, what)
        empty = [r for r, c in enumerate(counts) if c == 0]
        if empty and self.group is not None:
            raise ValueError(
                f"{name} has 0 rows on rank(s) {empty} of the process group (rows per rank: "
                f"{counts}); every rank must pass at least one row."
            )
        return counts

    @contextlib.contextmanager
    def raise_together(self, what):
        """Run a block on every rank; if it raised on any, raise on every rank.

        The rank that raised re-raises its own exception; the others raise
        the same type (ValueError, TypeError, NotImplementedError; any other
        becomes RuntimeError) naming the rank and its message. One small
        all-gather at the end of the block, whether it raised or not, so no
        rank is left waiting in a later collective. ``KeyboardInterrupt`` and
        other non-``Exception`` errors pass through without the exchange.
        The block must run no collective itself: a rank that raised before
        reaching it would meet the others' collective with this exchange.
        """
        if self.group is None:
            yield
            return
        error = None
        try:
            yield
        except Exception as err:
            error = err
        report = None
        if error is not None:
            kind = next((c for c in _RAISED_AS if isinstance(error, c)), RuntimeError)
            report = [kind.__name__, type(error).__name__, str(error)]
        reports = self.all_gather_json(report, f"{what}: exchanging whether every rank succeeded")
        if error is not None:
            raise error
        failed = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
        if failed:
            rank, (kind, name, message) = failed[0]
            cls = {c.__name__: c for c in _RAISED_AS}.get(kind, RuntimeError)
            raise cls(f"{what} failed on rank {rank} of the process group: {name}: {message}")


#: what the other ranks raise when one raised an instance of (the first match; else RuntimeError)
_RAISED_AS = (NotImplementedError, ValueError, TypeError)


def _split_json(data):
    """Decode concatenated JSON documents (one per rank)."""
    decoder = json.JSONDecoder()
    text, values, at = data.decode(), [], 0
    while at < len(text):
        (value,), at = decoder.raw_decode(text, at)
        values.append(value)
    return values
