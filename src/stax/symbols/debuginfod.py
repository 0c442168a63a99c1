"""A small debuginfod client (stdlib urllib): GET /buildid/<hex>/debuginfo from DEBUGINFOD_URLS or
/etc/debuginfod/*.urls, with short timeouts and an on-disk cache of hits and misses.

Cache layout under ``$XDG_CACHE_HOME/stax/debuginfod/`` (default ``~/.cache/stax/``):
``<build-id>/debuginfo`` is a verified download; ``<build-id>/miss`` records a lookup that found
nothing, honoured for ``MISS_TTL`` seconds (its mtime is the time of the miss).
"""

from __future__ import annotations

import glob
import os
import tempfile
import threading
import time

from stax.elfread import read_build_id, same_build_id

__all__ = ["DebuginfodClient", "cache_root", "server_urls", "MISS_TTL"]

MISS_TTL = 600.0  # seconds a miss is believed before the servers are asked again
_SERVER_DOWN_TTL = 60.0  # seconds an unreachable server is skipped
_DEFAULT_TIMEOUT = 3.0  # seconds per connect / per read without progress
_DEFAULT_TOTAL = 30.0  # seconds for a whole download
_DEFAULT_MAX_BYTES = 1 << 30
_CHUNK = 1 << 16
_URLS_GLOB = "/etc/debuginfod/*.urls"


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stax", "debuginfod")


def server_urls(urls_glob: str = _URLS_GLOB) -> list[str]:
    """DEBUGINFOD_URLS when set (an empty value turns debuginfod off), else the URLs listed in
    /etc/debuginfod/*.urls. Order kept, duplicates dropped."""
    env = os.environ.get("DEBUGINFOD_URLS")
    words: list[str] = []
    if env is not None:
        words = env.split()
    else:
        for path in sorted(glob.glob(urls_glob)):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        line = line.split("#", 1)[0]
                        words.extend(line.split())
            except OSError:
                continue
    out: list[str] = []
    for w in words:
        if not w.startswith(("http://", "https://")):
            continue
        w = w.rstrip("/")
        if w not in out:
            out.append(w)
    return out


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def _valid_build_id(build_id: str) -> bool:
    return 2 <= len(build_id) <= 128 and all(c in "0123456789abcdef" for c in build_id)


class DebuginfodClient:
    """Thread-safe. ``debuginfo(build_id)`` returns a local path or None, fetching at most once
    per build-id and MISS_TTL."""

    def __init__(
        self,
        urls: list[str] | None = None,
        cache_dir: str | None = None,
        timeout: float | None = None,
        miss_ttl: float = MISS_TTL,
    ) -> None:
        self._urls = urls
        self._cache_dir = cache_dir
        self.timeout = timeout or _env_float("DEBUGINFOD_TIMEOUT", _DEFAULT_TIMEOUT)
        self.total = _DEFAULT_TOTAL
        self.max_bytes = int(_env_float("DEBUGINFOD_MAXSIZE", _DEFAULT_MAX_BYTES))
        self.miss_ttl = miss_ttl
        self._lock = threading.Lock()
        self._down: dict[str, float] = {}  # server url -> monotonic time it may be retried
        self.stats = {"fetched": 0, "cache_hits": 0, "misses": 0, "errors": 0}

    @property
    def urls(self) -> list[str]:
        return self._urls if self._urls is not None else server_urls()

    @property
    def cache_dir(self) -> str:
        return self._cache_dir or cache_root()

    def debuginfo(self, build_id: str, fetch: bool = True) -> str | None:
        """Local path of the debug file for `build_id`, from the cache or (with `fetch`) from
        the first server that has it; None otherwise."""
        build_id = build_id.lower()
        if not _valid_build_id(build_id):
            return None
        entry = os.path.join(self.cache_dir, build_id)
        target = os.path.join(entry, "debuginfo")
        miss = os.path.join(entry, "miss")
        if os.path.isfile(target):
            with self._lock:
                self.stats["cache_hits"] += 1
            return target
        urls = self.urls
        if not urls or not fetch:
            return None
        with self._lock:  # one fetch at a time: a second caller finds the first one's result
            if os.path.isfile(target):
                self.stats["cache_hits"] += 1
                return target
            try:
                if time.time() - os.stat(miss).st_mtime < self.miss_ttl:
                    self.stats["cache_hits"] += 1
                    return None
            except OSError:
                pass
            for url in urls:
                if self._down.get(url, 0.0) > time.monotonic():
                    continue
                got = self._fetch(url, build_id, entry, target)
                if got:
                    self.stats["fetched"] += 1
                    try:
                        os.unlink(miss)
                    except OSError:
                        pass
                    return target
            self.stats["misses"] += 1
            try:
                os.makedirs(entry, exist_ok=True)
                with open(miss, "w") as f:
                    f.write(f"{time.time():.0f}\n")
            except OSError:
                pass
            return None

    def _fetch(self, base: str, build_id: str, entry: str, target: str) -> bool:
        import urllib.error
        import urllib.request

        url = f"{base}/buildid/{build_id}/debuginfo"
        req = urllib.request.Request(url, headers={"User-Agent": "stax"})
        deadline = time.monotonic() + self.total
        tmp_path = None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                if resp.status != 200:
                    return False
                os.makedirs(entry, exist_ok=True)
                fd, tmp_path = tempfile.mkstemp(dir=entry, prefix=".part-")
                size = 0
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > self.max_bytes or time.monotonic() > deadline:
                            raise TimeoutError("download too large or too slow")
                        out.write(chunk)
            if not _matches(tmp_path, build_id):
                self.stats["errors"] += 1
                return False
            os.replace(tmp_path, target)
            tmp_path = None
            return True
        except urllib.error.HTTPError:
            return False  # 404 and friends: this server does not have it
        except (urllib.error.URLError, OSError, TimeoutError, ValueError):
            self.stats["errors"] += 1
            self._down[base] = time.monotonic() + _SERVER_DOWN_TTL
            return False
        finally:
            if tmp_path is not None:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass


def _matches(path: str, build_id: str) -> bool:
    got = read_build_id(path)
    return got is not None and same_build_id(got.lower(), build_id)
