"""Headless Chromium (Debian's, ``/usr/bin/chromium``) driven by Playwright, for the page
tests and the wallboard benchmark, which run the backend on the reactor's loop.

Playwright's sync API may not run inside a running asyncio loop, and its objects belong to
the thread that made them: every browser step runs on one dedicated thread, and a test or
benchmark awaits it (``await browser.do(step)``, a Deferred), so the reactor keeps serving
the page meanwhile. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from twisted.internet.defer import Deferred

T = TypeVar("T")

CHROMIUM = Path(os.environ.get("PAGE_TEST_CHROMIUM", "/usr/bin/chromium"))
#: As root, in a sandbox with no network but the loopback: no sandbox of Chromium's own,
#: no GPU, and none of the background connections a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
#: Where the tests' screenshots go besides their own temporary folder (the README's come
#: from here: ``PAGE_TEST_SCREENSHOTS=docs/screenshots make test``).
SCREENSHOTS = os.environ.get("PAGE_TEST_SCREENSHOTS")


class BrowserThread:
    """One Chromium, driven from one thread."""

    def __init__(self) -> None:
        if not CHROMIUM.exists():
            raise RuntimeError(
                f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium), as "
                ".ci/run does, or point PAGE_TEST_CHROMIUM at one"
            )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser")
        self._playwright: Playwright | None = None
        self.browser: Browser | None = None
        self._thread.submit(self._start).result(timeout=60)

    def _start(self) -> None:
        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )

    def do(self, step: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``step(*args)`` on the browser's thread; the loop goes on meanwhile (a
        Deferred: the tests' coroutines run as Twisted's, which await Deferreds)."""
        return Deferred.fromFuture(asyncio.wrap_future(self._thread.submit(step, *args)))

    def new_page(self, width: int = 1400, height: int = 900, *, bypass_csp: bool = False) -> Page:
        """A page in a context of its own (its own sessionStorage): call it on the thread.
        ``bypass_csp`` lets a benchmark's instruments run (the pages forbid ``eval``)."""
        assert self.browser is not None
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, bypass_csp=bypass_csp
        )
        return context.new_page()

    def close(self) -> None:
        def stop() -> None:
            if self.browser is not None:
                self.browser.close()
            if self._playwright is not None:
                self._playwright.stop()

        self._thread.submit(stop).result(timeout=60)
        self._thread.shutdown()


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """``page`` as ``folder/name`` (full page), copied to ``$PAGE_TEST_SCREENSHOTS`` too."""
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(SCREENSHOTS) / name)
    return path
