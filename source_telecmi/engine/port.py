"""What the engine needs of an endpoint serving a list, as a protocol.

The engine reads through this interface only, so it never imports how TeleCMI is asked (the
client, its transport, pacing and credentials): the client's `ListEndpoint` is the one real
implementation, the tests' fakes are others, and the import chain of the engine ends at leaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol

from source_telecmi.telecmi.page import Fetched, Page

if TYPE_CHECKING:
    from source_telecmi.telecmi.platforms import ListRow


class Endpoint(Protocol):
    """One path serving a list: a page of it (for a time range or the whole list), or one answer."""

    @property
    def url(self) -> str: ...

    @property
    def path(self) -> str:
        """The path as TeleCMI names it, for messages."""
        ...

    @property
    def largest_page(self) -> int:
        """The most records a page is asked for."""
        ...

    @property
    def row(self) -> ListRow:
        """The list it serves (its fields, for a list that is one answer)."""
        ...

    @property
    def served(self) -> bool:
        """Whether TeleCMI gave it a usable answer in this sync (a later refusal is a fault, not a skip)."""
        ...

    def ask(self, span: Optional[tuple[int, int]] = None) -> dict[str, Any]:
        """The one answer for the records from span[0] to span[1] ms, or with no range."""
        ...

    def page(self, number: int, limit: int, span: Optional[tuple[int, int]] = None) -> Page:
        """Page `number` of `limit` records, of span[0] to span[1] ms or of the whole list."""
        ...


class FileSource(Protocol):
    """What fetches a file TeleCMI holds, by name, to a path (the client's `files.FileFetcher`)."""

    def fetch(self, name: str, target: Path) -> Fetched:
        """The file at `target`, whole (`downloaded`), or why not yet (`pending`); raises after every retry."""
        ...

    def abandon(self) -> None:
        """The sync is over: downloads running stop, and no temporary file is left behind."""
        ...
