"""Container archives: write (export), read safely (verify), import. No Dagster imports."""

from ops_pipelines.archives.fetch import fetch_archive
from ops_pipelines.archives.format import (
    FORMAT_VERSION,
    FORMATS,
    ArchiveError,
    ChecksumMismatch,
    Limits,
    ManifestMismatch,
    UnsafeMember,
    UnsupportedFormat,
    archive_key,
    check_registered_dimension,
)
from ops_pipelines.archives.importer import ImportRefused, ImportReport, import_archive
from ops_pipelines.archives.reader import VerifiedArchive, read_archive
from ops_pipelines.archives.writer import ArchiveReport, write_archive

__all__ = [
    "FORMATS",
    "FORMAT_VERSION",
    "ArchiveError",
    "ArchiveReport",
    "ChecksumMismatch",
    "ImportRefused",
    "ImportReport",
    "Limits",
    "ManifestMismatch",
    "UnsafeMember",
    "UnsupportedFormat",
    "VerifiedArchive",
    "archive_key",
    "check_registered_dimension",
    "fetch_archive",
    "import_archive",
    "read_archive",
    "write_archive",
]
