"""The embedded MultiValue store: one SQLite database per system."""

from d3hb.store.files import File, digests, file_digest
from d3hb.store.home import DEFAULT_SYSTEM, Home
from d3hb.store.system import Account, FileInfo, System, parse_ref
from d3hb.store.txn import Kind, Transaction

__all__ = [
    "Account", "DEFAULT_SYSTEM", "File", "FileInfo", "Home", "Kind", "System", "Transaction",
    "digests", "file_digest", "parse_ref",
]
