"""Get an archive to a local file, from wherever an operator points: an object key in the
object store, a local path, a ``file://`` URL, or an ``http(s)://`` URL (a presigned one)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ops_pipelines.archives.format import DEFAULT_LIMITS, ArchiveError, Limits
from ops_pipelines.objects import ObjectStore
from ops_pipelines.objects.base import ObjectNotFound


def fetch_archive(source: str, objects: ObjectStore | None, dest_dir: Path, limits: Limits = DEFAULT_LIMITS) -> Path:
    """A local path to read ``source`` from (downloaded into ``dest_dir`` when remote)."""
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        return _download(source, dest_dir / "archive", limits.total_bytes)
    if scheme == "file":
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(source).path))
    if Path(source).is_file():
        return Path(source)
    if objects is not None and not Path(source).is_absolute():
        try:
            objects.get_file(source, dest_dir / "archive")
        except (ObjectNotFound, ValueError):
            pass
        else:
            return dest_dir / "archive"
    where = f" nor an object in {objects.description}" if objects is not None else ""
    raise ArchiveError(f"{source!r} is neither a file, an http(s)/file URL{where}")


def _download(url: str, target: Path, max_bytes: int) -> Path:
    shown = url.split("?", 1)[0]  # a presigned URL's query carries its signature: keep it out of messages
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            copied = 0
            while block := response.read(1 << 20):
                copied += len(block)
                if copied > max_bytes:
                    raise ArchiveError(f"{shown}: more than {max_bytes} bytes, refused")
                out.write(block)
    except urllib.error.HTTPError as exc:
        raise ArchiveError(f"{shown}: HTTP {exc.code} {exc.reason} (an expired or altered link?)") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ArchiveError(f"{shown}: cannot download: {getattr(exc, 'reason', exc)}") from None
    return target
