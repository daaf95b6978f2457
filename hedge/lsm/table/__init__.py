"""Table: an immutable, sorted file of entries (an SSTable).

``TableBuilder`` (builder.py) encodes entries into page-aligned chunks,
``TableReader`` (reader.py) answers lookups and scans from them, format.py
holds the shared layout code.  Byte layout: docs/format/table.md.
"""
from hedge.lsm.table.builder import TableBuilder
from hedge.lsm.table.format import FORMAT_VERSION, PAGE, TableProperties
from hedge.lsm.table.reader import TableReader

__all__ = ["FORMAT_VERSION", "PAGE", "TableBuilder", "TableProperties", "TableReader"]
