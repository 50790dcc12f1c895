"""An input as it is published: a file, a folder, or an archive, read where it lies.

Spark reads plain, ``.gz`` and ``.bz2`` text in place. What it cannot read in place, a member of
a ``.tar``, ``.tar.gz``, ``.tar.bz2``, ``.tar.xz``, ``.tar.zst`` or ``.zip`` archive, or a
``.zst``/``.xz`` file, is streamed into the stage's scratch folder in one pass: only the files the
format reads, never the whole archive. A format that converts as it reads (the ListenBrainz JSON
dump) takes the members as streams instead (:meth:`Release.streams`) and stages nothing of them.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import io
import itertools
import lzma
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = ["Release", "ARCHIVES", "archive_suffix", "damaged", "plain_name"]

ARCHIVES = (".tar.zst", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")
STREAMS = (".gz", ".bz2", ".zst", ".xz")  # one compressed file
_IN_PLACE = ("", ".gz", ".bz2")  # what Spark's text reader decompresses itself
_TAR_BUFFER = 4 << 20  # bytes per read of a tar stream (tarfile reads 10 KB at a time by default)


def damaged() -> tuple[type[BaseException], ...]:
    """What decoders raise on a truncated or damaged download (each named by the caller with the file)."""
    import zlib

    import zstandard

    return (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError, OSError,
            zstandard.ZstdError)


def archive_suffix(name: str) -> str | None:
    """The archive suffix of ``name`` (``.tar.zst``, ``.zip``, ...), or None when it is no archive."""
    low = name.lower()
    return next((s for s in ARCHIVES if low.endswith(s)), None)


def _stream_suffix(name: str) -> str:
    low = name.lower()
    return next((s for s in STREAMS if low.endswith(s)), "")


def plain_name(name: str) -> str:
    """``name`` without its archive or compression suffix: ``listening-events.tsv.bz2`` -> ``listening-events.tsv``."""
    suffix = archive_suffix(name) or _stream_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _hidden(rel: PurePosixPath) -> bool:
    return any(p.startswith((".", "_")) for p in rel.parts)


def _zstd_reader(raw: IO[bytes]) -> IO[bytes]:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - in requirements.txt
        raise RuntimeError("reading .zst needs the zstandard package: pip install zstandard") from None
    return zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw, read_across_frames=True)


@contextmanager
def _decompressed(path: Path) -> Iterator[IO[bytes]]:
    """``path``'s bytes, decompressed by its suffix (a plain file as it is)."""
    suffix = _stream_suffix(path.name)
    with open(path, "rb") as raw:
        if suffix == ".gz":
            yield gzip.GzipFile(fileobj=raw)
        elif suffix == ".bz2":
            yield bz2.BZ2File(raw)
        elif suffix == ".xz":
            yield lzma.LZMAFile(raw)
        elif suffix == ".zst":
            yield _zstd_reader(raw)
        else:
            yield raw


class _Member:
    """One tar member's bytes, read straight from the archive's decompressed stream (no copy in between)."""

    def __init__(self, raw: IO[bytes], size: int):
        self._raw, self.left = raw, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        parts = []
        while n > 0:
            got = self._raw.read(n)
            if not got:
                raise EOFError("the archive ends inside a member: it is truncated")
            parts.append(got)
            n -= len(got)
            self.left -= len(got)
        return b"".join(parts) if len(parts) != 1 else parts[0]


def _skip(raw: IO[bytes], n: int) -> None:
    while n > 0:
        got = raw.read(min(n, _TAR_BUFFER))
        if not got:
            raise EOFError("the archive ends inside a member: it is truncated")
        n -= len(got)


def _tar_entries(raw: IO[bytes]) -> Iterator[tuple[str, _Member | None]]:
    """(name, its bytes) of each regular file of an uncompressed tar stream, and (name, None) of the rest.

    ``tarfile``'s stream mode copies every member through 10 KB reads and joins; this reads each member
    in the sizes asked for. Headers are parsed by ``tarfile`` itself, with GNU long names and pax paths.
    """
    long_name = None
    while True:
        header = raw.read(512)
        while header and len(header) < 512:  # a decompressor may return less than asked
            more = raw.read(512 - len(header))
            if not more:
                raise EOFError("the archive ends inside a header: it is truncated")
            header += more
        if not header:  # tar and tarfile end an archive with zero blocks: without them, it was cut short
            raise EOFError("the archive ends without its end-of-archive blocks: it is truncated")
        if header.count(0) == 512:  # the end-of-archive blocks
            return
        info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        padded = -(-info.size // 512) * 512
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE):
            data = _Member(raw, padded).read()[: info.size]
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.XHDTYPE:
                for record in data.decode("utf-8", "surrogateescape").split("\n"):
                    if " path=" in record:
                        long_name = record.split(" path=", 1)[1]
            continue
        name, long_name = long_name or info.name, None
        member = _Member(raw, info.size) if info.isfile() else None
        yield name, member
        _skip(raw, (member.left if member else info.size) + padded - info.size)


@contextmanager
def _tar(path: Path) -> Iterator[Iterator[tuple[str, _Member | None]]]:
    """A tar archive read as a stream: its entries in order, one pass, no seeks."""
    suffix = archive_suffix(path.name)
    with open(path, "rb") as raw:
        if suffix == ".tar.zst":
            yield _tar_entries(_zstd_reader(raw))
        elif suffix in (".tar.gz", ".tgz"):
            yield _tar_entries(gzip.GzipFile(fileobj=raw))
        elif suffix == ".tar.bz2":
            yield _tar_entries(bz2.BZ2File(raw))
        elif suffix == ".tar.xz":
            yield _tar_entries(lzma.LZMAFile(raw))
        else:
            yield _tar_entries(io.BufferedReader(raw, _TAR_BUFFER))


def _matches(rel: PurePosixPath, patterns: Sequence[str]) -> bool:
    name = plain_name(rel.name)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class Release:
    """A published input at ``path``; archive members the format reads are staged under ``scratch``.

    ``wanted`` names (glob patterns, compression suffix aside) every file the format may read, so
    one pass over an archive stages all of them.
    """

    path: Path
    scratch: Path | None = None
    wanted: tuple[str, ...] = ("*",)
    _staged: list[Path] | None = field(default=None, repr=False)

    @property
    def is_archive(self) -> bool:
        return self.path.is_file() and archive_suffix(self.path.name) is not None

    @property
    def name(self) -> str:
        """The release's own name: the archive's or folder's, without suffixes."""
        return plain_name(self.path.name)

    def _tree(self) -> Iterator[tuple[Path, PurePosixPath]]:
        """The visible files of a folder (or the one plain file), with their names relative to it, in path order."""
        base, files = (self.path.parent, [self.path]) if self.path.is_file() else (self.path, sorted(self.path.rglob("*")))
        for f in files:
            rel = PurePosixPath(f.relative_to(base).as_posix())
            if f.is_file() and not _hidden(rel):
                yield f, rel

    def names(self, limit: int = 10_000) -> Iterator[str]:
        """Relative names of the files here, lazily: a tar stream is read only as far as they are taken."""
        if not self.is_archive:
            yield from itertools.islice((str(rel) for _, rel in self._tree()), limit)
        elif archive_suffix(self.path.name) == ".zip":
            with zipfile.ZipFile(self.path) as z:
                yield from [n for n in z.namelist() if not n.endswith("/") and not _hidden(PurePosixPath(n))][:limit]
        else:
            with _tar(self.path) as entries:
                yield from itertools.islice((n for n, m in entries if m is not None and not _hidden(PurePosixPath(n))),
                                            limit)

    def find(self, *patterns: str) -> list[Path]:
        """Files Spark can read whose name matches one of ``patterns``, in path order (staged when needed)."""
        if self.path.is_file() and not self.is_archive:
            files = [self.path]  # the file the user pointed at, whatever its name
        elif self.path.is_dir():
            files = [f for f, rel in self._tree() if _matches(rel, patterns)]
        else:
            files = [f for f in self._stage() if _matches(PurePosixPath(f.name), patterns)]
        return [f if _stream_suffix(f.name) in _IN_PLACE else self._stage_stream(f) for f in files]

    def streams(self, *patterns: str) -> Iterator[tuple[str, IO[bytes]]]:
        """(relative name, decompressed bytes) of each file matching ``patterns``, in order, without staging."""
        if not self.is_archive:
            for f, rel in self._tree():
                if _matches(rel, patterns):
                    with _decompressed(f) as stream:
                        yield str(rel), stream
        elif archive_suffix(self.path.name) == ".zip":
            with zipfile.ZipFile(self.path) as z:
                for n in z.namelist():
                    rel = PurePosixPath(n)
                    if not n.endswith("/") and not _hidden(rel) and _matches(rel, patterns):
                        with z.open(n) as stream:
                            yield n, stream
        else:
            with _tar(self.path) as entries:
                for name, member in entries:
                    rel = PurePosixPath(name)
                    if member is not None and not _hidden(rel) and _matches(rel, patterns):
                        yield name, member

    def _target(self, rel: str) -> Path:
        if self.scratch is None:
            raise ValueError(f"{self.path} must be staged to be read, and the loader was given no scratch folder")
        parts = [p for p in PurePosixPath(rel).parts if p not in ("", ".", "..", "/")]
        return self.scratch.joinpath(self.name, *parts)

    def _stage(self) -> list[Path]:
        """One pass over the archive: every member matching ``wanted`` copied to scratch, in member order."""
        if self._staged is None:
            staged = []
            for rel, stream in self.streams(*self.wanted):
                target = self._target(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as out:
                    shutil.copyfileobj(stream, out, 1 << 20)
                staged.append(target)
            self._staged = sorted(staged)
        return self._staged

    def _stage_stream(self, f: Path) -> Path:
        """A ``.zst``/``.xz`` file decompressed into scratch (Spark's text reader does not decode them)."""
        staged = self.scratch is not None and f.is_relative_to(self.scratch)  # a member already staged: beside it
        target = f.with_name(plain_name(f.name)) if staged else self._target(f"decoded/{plain_name(f.name)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with _decompressed(f) as stream, open(target, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        return target
