"""The trio/asyncio bridge: py-libp2p runs on trio, the Endpoint (aiohttp) runs on asyncio.

Design. Each side keeps its own thread and event loop, and they talk only through the two
primitives that are documented as thread-safe and never block: ``TrioToken.run_sync_soon`` (asyncio
-> trio) and ``loop.call_soon_threadsafe`` (trio -> asyncio).

- Reading libp2p state: ``TrioBridge.run(fn)`` (awaited on asyncio) schedules the synchronous ``fn``
  on the trio thread, where it reads the swarm, streams and routing table between two trio steps, so
  it sees a consistent view and needs no locks. The result comes back through
  ``call_soon_threadsafe`` into an asyncio future. A busy or dead trio loop cannot hang asyncio: the
  caller's time limit (the Introspector's provider timeout) applies, and a late result is ignored.
- Events: trio-side hooks call ``Introspector.publish``, which hops to the asyncio loop with
  ``call_soon_threadsafe``. The trio side never waits for asyncio, so neither loop can deadlock the
  other.

``TrioThread`` runs trio in a worker thread for asyncio programs (the demo, tests);
``AsyncioThread`` runs an asyncio loop in a worker thread for trio programs (``introspect_host``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class BridgeClosed(RuntimeError):
    """The trio side is gone."""


class TrioBridge:
    """Call synchronous functions on a trio loop from asyncio."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token

    @classmethod
    def current(cls) -> TrioBridge:
        """The bridge to the trio loop this is called from."""
        return cls(trio.lowlevel.current_trio_token())

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if fut.done():  # the caller gave up (timeout, cancel)
                return
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

        def job() -> None:  # on the trio thread
            try:
                result: tuple[bool, Any] = (True, fn(*args))
            except Exception as exc:
                result = (False, exc)
            with contextlib.suppress(RuntimeError):  # asyncio loop already closed
                loop.call_soon_threadsafe(settle, *result)

        try:
            self.token.run_sync_soon(job)
        except trio.RunFinishedError as exc:
            raise BridgeClosed("the trio loop has finished") from exc
        return await fut

    async def run_async(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the coroutine function ``afn`` as a trio system task and await its result from asyncio."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not fut.done():
                fut.set_result(value) if ok else fut.set_exception(value)

        async def task() -> None:
            try:
                result: tuple[bool, Any] = (True, await afn(*args))
            except Exception as exc:
                result = (False, exc)
            except BaseException as exc:  # cancelled by trio's shutdown: report, then let it unwind
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, False, BridgeClosed(repr(exc)))
                raise
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, *result)

        try:
            self.token.run_sync_soon(trio.lowlevel.spawn_system_task, task)
        except trio.RunFinishedError as exc:
            raise BridgeClosed("the trio loop has finished") from exc
        return await fut


class TrioThread:
    """trio.run(main) in a daemon thread, started and stopped from asyncio.

    ``main(task_status)`` must call ``task_status.started(value)`` once ready; ``start()`` returns
    that value. ``stop()`` cancels everything trio runs and waits for the thread (bounded).
    """

    def __init__(self, main: Callable[..., Awaitable[None]], name: str = "trio") -> None:
        self._main = main
        self._name = name
        self._thread: threading.Thread | None = None
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._cancel: trio.CancelScope | None = None
        self.bridge: TrioBridge | None = None

    async def start(self, timeout: float = 30.0) -> Any:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return await asyncio.wait_for(asyncio.wrap_future(self._ready), timeout)

    def _run(self) -> None:
        async def root() -> None:
            self.bridge = TrioBridge.current()
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    value = await nursery.start(self._main)
                    self._ready.set_result(value)

        try:
            trio.run(root)
            if not self._ready.done():
                self._ready.set_exception(RuntimeError("trio main returned before it was ready"))
            self._done.set_result(None)
        except BaseException as exc:  # reported to the asyncio side
            if not self._ready.done():
                self._ready.set_exception(exc)
            self._done.set_exception(exc)

    async def stop(self, timeout: float = 4.0) -> BaseException | None:
        """Cancel trio's work; returns the exception trio ended with (contained here), if any."""
        if self.bridge is not None and self._cancel is not None:
            with contextlib.suppress(BridgeClosed):
                await asyncio.wait_for(self.bridge.run(self._cancel.cancel), timeout)
        error: BaseException | None = None
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._done)), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return TimeoutError(f"trio thread did not finish within {timeout}s")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # e.g. an ExceptionGroup from libp2p shutdown
            error = exc
        if self._thread is not None:  # trio.run has returned: the thread ends in a moment
            await asyncio.to_thread(self._thread.join, 1.0)
        return error

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class AsyncioThread:
    """An asyncio loop in a daemon thread, for trio programs that want an Endpoint."""

    def __init__(self, name: str = "asyncio-introspection") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the asyncio thread and await its result from trio (without blocking trio)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        # trio-typing's stubs (a libp2p dependency, shadowing trio's own annotations) predate abandon_on_cancel
        return await trio.to_thread.run_sync(fut.result, abandon_on_cancel=True)  # type: ignore[call-arg]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()
