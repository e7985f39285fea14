"""A tiny RPC to child processes: pickled frames over the child's stdin and stdout.

Frames are a 4-byte big-endian length and a pickle. Requests ``(call_id, method, args)``;
replies ``(call_id, ok, value_or_error_text)``. ``method`` is an attribute of the child's root
object (a coroutine function or a plain function). ``"exit"`` ends the child.

Bounded and self-cleaning: a child exits when its stdin closes (the parent went away), gets
SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), runs in its own session (Ctrl-C reaches
only the parent, which stops it) and exits on its own after ``--max-seconds``. The parent kills
it if it does not exit within a few seconds of being asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pickle
import signal
import struct
import sys
from pathlib import Path
from typing import Any

_LEN = struct.Struct("!I")
MAX_FRAME = 1 << 30


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next object, or None at EOF."""
    try:
        head = await reader.readexactly(_LEN.size)
        (size,) = _LEN.unpack(head)
        if size > MAX_FRAME:
            raise ValueError(f"frame too large: {size}")
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


def child_env() -> dict[str, str]:
    """The parent's environment with this copy of mqhook first on PYTHONPATH."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class RemoteError(Exception):
    """The child raised; the message carries its type and text."""


class Remote:
    """Parent side: one child process and its pending calls."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, module: str, name: str, max_seconds: float) -> Remote:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "--max-seconds",
            str(max_seconds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            env=child_env(),
            start_new_session=True,
        )
        return cls(proc, name)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        error = "exited"
        try:
            while True:
                msg = await read_frame(self.proc.stdout)
                if msg is None:
                    break
                call_id, ok, value = msg
                fut = self._pending.pop(call_id, None)
                if fut is not None and not fut.done():
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(RemoteError(f"{self.name}: {value}"))
        except (OSError, ValueError, pickle.UnpicklingError) as exc:
            error = f"protocol error: {exc!r}"
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RemoteError(f"{self.name}: child {error} (exit code {self.proc.returncode})"))
        self._pending.clear()

    async def call(self, method: str, *args: Any, timeout: float) -> Any:
        if self._reader.done():
            raise RemoteError(f"{self.name}: child is gone (exit code {self.proc.returncode})")
        assert self.proc.stdin is not None
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        self.proc.stdin.write(frame((self._next, method, args)))
        async with asyncio.timeout(timeout):
            return await fut

    async def close(self, timeout: float = 5.0) -> None:
        """Ask the child to exit; kill it if it does not within ``timeout`` s."""
        proc = self.proc
        if proc.returncode is None and proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.write(frame((0, "exit", ())))
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


# -- child side --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def serve(root: Any, max_seconds: float, out_fd: int) -> None:
    """Answer requests read from stdin until ``exit``, EOF or ``max_seconds``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    tasks: set[asyncio.Task[None]] = set()

    def send(obj: Any) -> None:
        data = memoryview(frame(obj))
        while data:
            n = os.write(out_fd, data)
            data = data[n:]

    async def dispatch(call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            value = getattr(root, method)(*args)
            if asyncio.iscoroutine(value):
                value = await value
            send((call_id, True, value))
        except Exception as exc:
            send((call_id, False, f"{type(exc).__name__}: {exc}"))

    try:
        async with asyncio.timeout(max_seconds):
            while True:
                msg = await read_frame(reader)
                if msg is None or msg[1] == "exit":
                    break
                task = asyncio.create_task(dispatch(*msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    except TimeoutError:
        print(f"{sys.argv[0]}: exiting after --max-seconds {max_seconds}", file=sys.stderr)
    finally:
        for task in list(tasks):
            task.cancel()
        close = getattr(root, "close", None)
        if close is not None:
            close()


def child_main(root: Any, argv: list[str] | None = None) -> int:
    """Entry point of a child: ``python -m MODULE --max-seconds S``."""
    args = sys.argv[1:] if argv is None else argv
    max_seconds = float(args[args.index("--max-seconds") + 1]) if "--max-seconds" in args else 3600.0
    _die_with_parent()
    if os.getppid() == 1:
        return 1  # the parent is already gone
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print() must not corrupt the frames
    try:
        import uvloop
    except ImportError:  # pragma: no cover - mqhook depends on uvloop
        asyncio.run(serve(root, max_seconds, out_fd))
    else:
        uvloop.run(serve(root, max_seconds, out_fd))
    return 0
