"""The Vectors screen: the vector store's collections (documents, dimension, embedder,
metadata) beside a page of the selected one's documents (id, excerpt, metadata), as a database
console shows a catalog beside its results. Filters (a metadata ``where`` as JSON, a "contains"
text) apply to the page and to a semantic query, whose results come nearest first with their
distances. Enter shows a document whole; ``n`` creates a collection, ``a`` adds files (text,
Markdown, JSON lines, as ``mimir-tui vectors add`` reads them), ``d`` deletes a document and
``D`` the collection, after a confirmation. Escape goes back.

Every store call runs in a thread worker (one at a time: the screen's lock), through
:mod:`mimir_tui.ops.vectors`; the status line says ``loading...`` while one runs and the
a loading indicator moves beside it, so a slow server never holds the event loop. Errors
are one line in the status line. This module is imported when the screen opens, and it does not
import chromadb itself: the store's worker does (:func:`mimir_tui.vectors.open_store`).
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, LoadingIndicator, Select, Static
from textual.worker import Worker

from ...errors import BadInput
from ...ops import vectors as read
from ...vectors import EMBEDDERS, check_collection_name, vectors_enabled
from ...vectors.documents import parse_where, read_documents
from ..outcome import FINISHED, deliver
from ..panes import apply_rows
from ..widgets.confirm import ConfirmScreen
from ..widgets.table import Table

log = logging.getLogger("mimir.tui")

#: Narrower than this, the collections sit above the documents instead of beside them.
SIDE_BY_SIDE = 100
#: The widest a column of the documents table gets (its cells are excerpts already).
COLUMN_WIDTH = 48


def disabled_line(settings: Any) -> str:
    where = f" in {settings.config_path}" if settings.config_path else ""
    return f"the vector store is turned off (persistence.enable_vector_db: false{where})"


class DocumentsTable(Table):
    BINDINGS = [Binding("enter", "select_cursor", "Open", id="vectors-open")]


class VectorsScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("slash", "focus_filter('vectors-contains')", "Contains", id="vectors-contains"),
        Binding("w", "focus_filter('vectors-where')", "Where", id="vectors-where"),
        Binding("s", "focus_filter('vectors-query')", "Query", id="vectors-query"),
        Binding("n", "new_collection", "New collection", id="vectors-new"),
        Binding("a", "add_files", "Add files", id="vectors-add"),
        Binding("d", "delete_document", "Delete document", id="vectors-delete"),
        Binding("D", "drop_collection", "Delete collection", id="vectors-drop"),
        Binding("right_square_bracket", "turn(1)", "Next page", id="vectors-page-next"),
        Binding("left_square_bracket", "turn(-1)", "Previous page", id="vectors-page-previous"),
        Binding("r,ctrl+r", "reload", "Reload", show=False, id="vectors-reload"),
    ]

    def __init__(self, page_size: int | None = None) -> None:
        super().__init__(id="vectors")
        self.page_size = page_size
        self.enabled = True
        #: The selected collection, and the page its table shows.
        self.collection: str | None = None
        self.page: read.DocumentPage | None = None
        self.start = 0
        self._store: Any = None
        self._lock = threading.Lock()  # one store call at a time
        self._closed = False  # the screen is gone: a call still waiting does nothing
        self._then: dict[Worker[Any], Callable[[Any], None]] = {}
        self._page_ask = 0  # the last page asked for (a late answer to an older one is dropped)

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="vectors-top"):
            yield Static("loading...", id="vectors-status", classes="summary")
            yield LoadingIndicator(id="vectors-loading")
        with Horizontal(id="vectors-body"):
            collections = Table(id="vectors-collections")
            collections.add_columns(*read.COLLECTION_COLUMNS)
            yield collections
            with Vertical(id="vectors-right"):
                with Horizontal(id="vectors-filters"):
                    yield Input(placeholder='where {"key": "value"}', id="vectors-where", compact=True)
                    yield Input(placeholder="contains text", id="vectors-contains", compact=True)
                    yield Input(placeholder="query by meaning", id="vectors-query", compact=True)
                documents = DocumentsTable(id="vectors-documents")
                documents.add_columns(*read.DOCUMENT_COLUMNS)
                yield documents
        yield Footer()

    def on_mount(self) -> None:
        settings = self.app.settings  # type: ignore[attr-defined]
        self.sub_title = "vector store"
        self.page_size = self.page_size or settings.ui.page_size
        self.query_one("#vectors-collections").border_title = "Collections"
        self.query_one("#vectors-documents").border_title = "Documents"
        self._layout()
        self.query_one("#vectors-loading").display = False
        if not vectors_enabled(settings):
            self.enabled = False
            self.query_one("#vectors-body").display = False
            self.say(disabled_line(settings))
            return
        self.query_one("#vectors-collections").focus()
        self.action_reload()

    def on_resize(self, event: events.Resize) -> None:
        self._layout()

    def _layout(self) -> None:
        self.set_class(self.size.width < SIDE_BY_SIDE, "-narrow")

    def on_unmount(self) -> None:
        """Let go of the store (an embedded one is then free for another process), after the
        call in progress, in a thread: a store still being opened is closed once it is."""
        self._closed = True
        threading.Thread(target=self._close, name="vectors-close", daemon=True).start()

    def _close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def say(self, line: str, *, error: bool = False) -> None:
        status = self.query_one("#vectors-status", Static)
        status.set_class(error, "-error")
        status.update(Text(line, end=""))

    # -- the store, in workers ----------------------------------------------------------------

    def work(self, what: str, job: Callable[[Any], Any], then: Callable[[Any], None]) -> None:
        """``job(store)`` in a thread worker (after the call in progress); ``then(result)`` on
        the event loop, or the error in the status line. Meanwhile the status line says what
        runs and a loading indicator moves beside it."""
        if not self.enabled:
            return
        self.say(f"{what}...")
        self.query_one("#vectors-loading").display = True

        def run() -> Any:
            with self._lock:
                if self._closed:
                    return None
                if self._store is None:
                    from ...vectors import open_store

                    self._store = open_store(self.app.settings)  # type: ignore[attr-defined]
                return job(self._store)

        worker = self.run_worker(run, thread=True, exit_on_error=False, group="vectors", name=what)
        self._then[worker] = then

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        # The state the event tells, not the worker's now: a late event of a worker that has
        # finished since still says PENDING or RUNNING (its own event follows).
        if worker not in self._then or event.state not in FINISHED:
            return
        event.stop()
        then = self._then.pop(worker)
        if self._closed:
            return
        self.query_one("#vectors-loading").display = bool(self._then)
        deliver(worker, event.state, worker.name, then, self.say)

    # -- collections --------------------------------------------------------------------------

    def action_reload(self) -> None:
        """The collections again, then the selected one's page."""
        self.work("reading the collections", read.read_collections, self._show_collections)

    def _show_collections(self, found: read.Collections) -> None:
        table = self.query_one("#vectors-collections", DataTable)
        apply_rows(table, found.rows)
        names = [key for key, _ in found.rows]
        if not names:
            self.collection = self.page = None
            self.query_one("#vectors-documents", DataTable).clear()
            self.say(f"{found.summary}; n creates one")
            return
        self.say(found.summary)
        if self.collection not in names:
            self.collection = names[0]
            self.start = 0
        table.move_cursor(row=names.index(self.collection), animate=False)
        self.load()

    @on(DataTable.RowHighlighted, "#vectors-collections")
    def _collection_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = str(event.row_key.value)
        if name != self.collection:
            self.collection = name
            self.start = 0
            self.load()

    # -- documents ----------------------------------------------------------------------------

    def filters(self) -> tuple[dict[str, Any] | None, str | None, str]:
        where = parse_where(self.query_one("#vectors-where", Input).value, "where")
        contains = self.query_one("#vectors-contains", Input).value.strip() or None
        return where, contains, self.query_one("#vectors-query", Input).value.strip()

    def load(self) -> None:
        """The selected collection's page at :attr:`offset` with the filters; or, with a query,
        its nearest documents."""
        name = self.collection
        if name is None:
            return
        try:
            where, contains, text = self.filters()
        except BadInput as exc:
            self.say(str(exc), error=True)
            return
        limit = int(self.page_size or 50)
        offset = self.start
        self._page_ask += 1
        ask = self._page_ask

        def job(store: Any) -> read.DocumentPage:
            if text:
                return read.read_query(store, name, text, n=limit, where=where, contains=contains)
            return read.read_page(store, name, offset=offset, limit=limit, where=where, contains=contains)

        what = f"reading {name}" if not text else f"reading {name}: query"
        self.work(what, job, lambda page: self._show_page(page, ask))

    def _show_page(self, page: read.DocumentPage, ask: int) -> None:
        if ask != self._page_ask:
            return  # an older page, asked for before the one now awaited
        table = self.query_one("#vectors-documents", DataTable)
        if self.page is None or self.page.query != page.query or self.page.rows != page.rows:
            # Columns made anew, their widths set from this page's cells (not the widest seen
            # before, nor measured later by the table: two pages in one frame were not).
            table.clear(columns=True)
            labels = read.RESULT_COLUMNS if page.query else read.DOCUMENT_COLUMNS
            for i, label in enumerate(labels):
                width = max([len(label), *(len(cells[i]) for _, cells in page.rows)])
                table.add_column(label, width=min(width, COLUMN_WIDTH))
            for key, cells in page.rows:
                table.add_row(*(Text(c, end="") for c in cells), key=key)
        self.page = page
        more = "; ] next page" if page.more and not page.query else ""
        back = "; [ previous" if page.offset and not page.query else ""
        self.say(page.summary + more + back)

    def action_turn(self, step: int) -> None:
        page = self.page
        if page is None or page.query:
            return
        size = int(self.page_size or 50)
        if step > 0 and not page.more:
            return
        offset = max(0, self.start + step * size)
        if offset != self.start:
            self.start = offset
            self.load()

    @on(Input.Submitted)
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.start = 0
        self.load()
        self.query_one("#vectors-documents").focus()

    def action_focus_filter(self, field_id: str) -> None:
        self.query_one(f"#{field_id}", Input).focus()

    def action_back(self) -> None:
        """Out of a filter field to the documents; else back to the dashboard."""
        if isinstance(self.focused, Input):
            self.query_one("#vectors-documents").focus()
        else:
            self.app.pop_screen()

    def selected_document(self) -> Any:
        table = self.query_one("#vectors-documents", DataTable)
        if self.page is None or not table.row_count:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return next((d for d in self.page.documents if d.id == key), None)

    @on(DataTable.RowSelected, "#vectors-documents")
    def _document_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        doc = self.selected_document()
        if doc is not None and self.page is not None:
            self.app.push_screen(DocumentScreen(self.page.collection, doc))

    # -- changes ------------------------------------------------------------------------------

    def action_new_collection(self) -> None:
        if not self.enabled:
            return
        fields = [
            ("name", "Name", Input(placeholder="3-512 of a-z A-Z 0-9 . _ -", compact=True)),
            (
                "embedder",
                "Embedder",
                Select([(e, e) for e in EMBEDDERS], allow_blank=False, compact=True, value=self._default_embedder()),
            ),
            ("metadata", "Metadata", Input(placeholder='optional JSON, e.g. {"team": "ops"}', compact=True)),
        ]
        self.app.push_screen(VectorForm("New collection", fields, check=_check_new), self._create)

    def _default_embedder(self) -> str:
        chosen = self.app.settings.vectors.embedding  # type: ignore[attr-defined]
        return chosen if chosen in EMBEDDERS else EMBEDDERS[0]

    def _create(self, values: dict[str, Any] | None) -> None:
        if not values:
            return
        name, embedder = values["name"].strip(), values["embedder"]
        metadata = parse_where(values["metadata"], "metadata")

        def created(info: dict[str, Any]) -> None:
            self.collection, self.start = name, 0
            self.app.notify(f"created collection {name} (embedder {info['embedder']})")
            self.action_reload()

        self.work(f"creating {name}", lambda store: store.create(name, embedder=embedder, metadata=metadata), created)

    def action_add_files(self) -> None:
        name = self.collection
        if not self.enabled:
            return
        if name is None:
            self.say("no collection to add files to: n creates one", error=True)
            return
        fields = [("paths", "Files", Input(placeholder="paths (text, Markdown, .jsonl), space between", compact=True))]
        self.app.push_screen(
            VectorForm(f"Add files to {name}", fields, check=_check_paths), lambda values: self._add(name, values)
        )

    def _add(self, name: str, values: dict[str, Any] | None) -> None:
        if not values:
            return
        paths = [Path(p).expanduser() for p in shlex.split(values["paths"])]

        def add(store: Any) -> tuple[int, int]:
            docs = [doc for path in paths for doc in read_documents(path)]
            added = store.add(name, docs)
            return added, store.count(name)

        def added(result: tuple[int, int]) -> None:
            self.app.notify(f"added {result[0]} document(s) to {name} ({result[1]} in all)")
            self.action_reload()

        self.work(f"adding {len(paths)} file(s) to {name}", add, added)

    def action_delete_document(self) -> None:
        doc = self.selected_document()
        if doc is None or self.page is None:
            return
        name, ident = self.page.collection, doc.id

        def deleted(count: int) -> None:
            self.app.notify(f"deleted document {ident} from {name}" if count else f"{name}: no document {ident}")
            self.action_reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.work(f"deleting {ident}", lambda store: store.delete(name, [ident]), deleted)

        self.app.push_screen(ConfirmScreen(f"Delete document {ident} from collection {name}?"), answered)

    def action_drop_collection(self) -> None:
        name = self.collection
        if not self.enabled or name is None:
            return
        count = next((str(c[1]) for key, c in self._collection_rows() if key == name), "?")

        def dropped(_: Any) -> None:
            self.collection = self.page = None
            self.app.notify(f"deleted collection {name}")
            self.action_reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.work(f"deleting {name}", lambda store: store.drop(name), dropped)

        question = f"Delete collection {name} and its {count} document(s)? This cannot be undone."
        self.app.push_screen(ConfirmScreen(question), answered)

    def _collection_rows(self) -> list[tuple[str, list[Any]]]:
        table = self.query_one("#vectors-collections", DataTable)
        return [(str(key.value), table.get_row(key)) for key in table.rows]


def _check_new(values: dict[str, Any]) -> tuple[str, str] | None:
    try:
        check_collection_name(values["name"].strip())
    except BadInput as exc:
        return "name", str(exc)
    try:
        parse_where(values["metadata"], "metadata")
    except BadInput as exc:
        return "metadata", str(exc)
    return None


def _check_paths(values: dict[str, Any]) -> tuple[str, str] | None:
    try:
        paths = shlex.split(values["paths"])
    except ValueError as exc:
        return "paths", f"paths: {exc}"
    if not paths:
        return "paths", "paths: give at least one file"
    for path in paths:  # a quick look (the worker reads them)
        if not Path(path).expanduser().is_file():
            return "paths", f"{path}: no such file"
    return None


class VectorForm(ModalScreen[dict[str, Any] | None]):
    """A small form (a label and a field a line); Enter or ctrl+s submits, Escape cancels.
    ``check(values)`` returns ``(field, message)`` for what it refuses, shown in the form."""

    BINDINGS = [
        Binding("ctrl+s", "submit", "Save", id="form-save"),
        Binding("escape", "cancel", "Cancel", id="form-cancel"),
    ]

    def __init__(
        self,
        title: str,
        fields: Sequence[tuple[str, str, Widget]],
        check: Callable[[dict[str, Any]], tuple[str, str] | None],
    ) -> None:
        super().__init__(id="vector-form")
        self.title_text = title
        self.fields = fields
        self.check = check

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="vector-form-box") as box:
            box.border_title = self.title_text
            for key, label, field in self.fields:
                field.id = f"form-{key}"
                with Horizontal():
                    yield Label(label)
                    yield field
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Save (ctrl+s)", id="form-save", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="form-cancel", compact=True)

    def on_mount(self) -> None:
        self.fields[0][2].focus()

    def values(self) -> dict[str, Any]:
        return {key: getattr(field, "value", None) for key, _, field in self.fields}

    def action_submit(self) -> None:
        values = self.values()
        refused = self.check(values)
        for _, _, field in self.fields:
            field.remove_class("-invalid")
        if refused is not None:
            key, message = refused
            self.query_one(f"#form-{key}").add_class("-invalid")
            self.query_one("#form-error", Static).update(Text(message))
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "form-save":
            self.action_submit()
        else:
            self.action_cancel()


class DocumentScreen(ModalScreen[None]):
    """One document whole: id, distance (from a query), metadata, and its full text."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="document-close")]

    def __init__(self, collection: str, document: Any) -> None:
        super().__init__(id="vector-document")
        self.collection = collection
        self.document = document

    def compose(self) -> ComposeResult:
        doc = self.document
        lines = [f"id        {doc.id}"]
        if doc.distance is not None:
            lines.append(f"distance  {doc.distance:.4f}")
        lines += [f"metadata  {key}: {value}" for key, value in doc.metadata.items()]
        with VerticalScroll(id="vector-document-box") as box:
            box.border_title = f"{self.collection} / {doc.id}"
            yield Static(Text("\n".join(lines)), id="vector-document-head")
            yield Static(Text(doc.text or ""), id="vector-document-text")
