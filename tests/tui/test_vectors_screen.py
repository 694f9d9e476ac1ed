"""The Vectors screen (issue 14, item 4) driven by Pilot over a real embedded chromadb store in
tmp_path with the offline embedder: what it shows is checked on the screen, what it changes in
the store."""

from __future__ import annotations

import os
import socket

import pytest
from test_execution import _until
from textual.widgets import DataTable, Input, Select, Static

from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.vectors import DocumentScreen, VectorForm, VectorsScreen
from mimir_tui.tui.widgets.confirm import ConfirmScreen
from mimir_tui.vectors import open_store

NOTES = [
    {"id": f"note-{k:02d}", "text": f"note number {k} of the paging test", "metadata": {"k": k}} for k in range(25)
]
TOPICS = [
    {"id": ident, "text": text, "metadata": {"kind": kind}}
    for ident, kind, text in (
        ("weather", "news", "Rain and snow are forecast for the weekend, with strong wind."),
        ("markets", "news", "Stock market prices fell as investors sold shares."),
        ("cooking", "recipe", "Bake the bread in a hot oven until the crust is golden."),
        ("football", "sport", "The team scored two goals in the second half of the match."),
    )
]


@pytest.fixture
def settings(sqlite_settings):
    """A store with two collections: ``notes`` (25 documents) and ``topics`` (4)."""
    sqlite_settings.ui.page_size = 10
    store = open_store(sqlite_settings)
    try:
        store.create("notes", metadata={"team": "ops"})
        store.add("notes", NOTES)
        store.create("topics")
        store.add("topics", TOPICS)
    finally:
        store.close()
    return sqlite_settings


def _status(app) -> str:
    return str(app.screen.query_one("#vectors-status", Static).render())


def _keys(app, table: str) -> list[str]:
    found = app.screen.query_one(f"#{table}", DataTable)
    return [str(key.value) for key in found.rows]


def _cells(app, table: str, key: str) -> list[str]:
    return [str(c) for c in app.screen.query_one(f"#{table}", DataTable).get_row(key)]


def _idle(app) -> bool:
    screen = app.screen
    return isinstance(screen, VectorsScreen) and not screen._then


async def _open(pilot, collection: str = "notes") -> VectorsScreen:
    """The screen opened with ``v``, showing ``collection``'s first page."""
    app = pilot.app
    await pilot.pause()
    await pilot.press("v")
    assert await _until(pilot, lambda: _idle(app) and _keys(app, "vectors-documents"), 60), (
        _status(app),
        [(w.name, w.state) for w in app.screen._then],
    )
    screen = app.screen
    assert isinstance(screen, VectorsScreen)
    if screen.collection != collection:
        table = screen.query_one("#vectors-collections", DataTable)
        table.move_cursor(row=table.get_row_index(collection))
        assert await _until(pilot, lambda: _idle(app) and screen.page and screen.page.collection == collection)
    return screen


async def test_the_collections_show_their_counts_dimension_embedder_and_metadata(settings):
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open(pilot)
        assert _keys(app, "vectors-collections") == ["notes", "topics"]
        assert _cells(app, "vectors-collections", "notes") == ["notes", "25", "256", "offline", "team=ops"]
        assert _cells(app, "vectors-collections", "topics")[:4] == ["topics", "4", "256", "offline"]
        assert _status(app).startswith("notes: documents 1-10 of 25")


async def test_paging_shows_the_next_page_and_every_document_once(settings):
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot)
        seen = [_keys(app, "vectors-documents")]
        for _ in range(2):
            await pilot.press("right_square_bracket")
            assert await _until(
                pilot, lambda: _idle(app) and screen.start == 10 * len(seen) and screen.page.offset == screen.start
            )
            seen.append(_keys(app, "vectors-documents"))
        assert [len(page) for page in seen] == [10, 10, 5]
        assert sorted(k for page in seen for k in page) == [d["id"] for d in NOTES]
        assert _status(app).startswith("notes: documents 21-25 of 25")
        await pilot.press("right_square_bracket")  # no page after the last
        await pilot.pause()
        assert screen.start == 20
        await pilot.press("left_square_bracket")
        assert await _until(pilot, lambda: _idle(app) and screen.page.offset == 10)
        assert _keys(app, "vectors-documents") == seen[1]


async def test_the_contains_and_where_filters(settings):
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, "topics")
        await pilot.press("slash")
        assert isinstance(screen.focused, Input) and screen.focused.id == "vectors-contains"
        await pilot.press(*"oven", "enter")
        assert await _until(pilot, lambda: _idle(app) and _keys(app, "vectors-documents") == ["cooking"])
        assert "contains 'oven'" in _status(app)
        screen.query_one("#vectors-contains", Input).value = ""
        await pilot.press("w")
        await pilot.press(*'{"kind": "news"}', "enter")
        assert await _until(
            pilot, lambda: _idle(app) and sorted(_keys(app, "vectors-documents")) == ["markets", "weather"]
        )
        screen.query_one("#vectors-where", Input).value = "{not json"
        await pilot.press("w", "enter")
        assert await _until(pilot, lambda: "where: not JSON" in _status(app))
        assert screen.query_one("#vectors-status").has_class("-error")


async def test_a_query_shows_distances_nearest_first(settings):
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, "topics")
        await pilot.press("s", *"snow and rain forecast", "enter")
        assert await _until(pilot, lambda: _idle(app) and screen.page.query)
        table = screen.query_one("#vectors-documents", DataTable)
        assert [str(c.label) for c in table.columns.values()] == ["Distance", "ID", "Text", "Metadata"]
        keys = _keys(app, "vectors-documents")
        assert keys[0] == "weather" and sorted(keys) == sorted(d["id"] for d in TOPICS)
        distances = [float(_cells(app, "vectors-documents", k)[0]) for k in keys]
        assert distances == sorted(distances) and distances[0] < distances[1]
        # Enter: the document whole, with its distance.
        table.move_cursor(row=0)
        await pilot.press("enter")
        assert await _until(pilot, lambda: isinstance(app.screen, DocumentScreen))
        text = str(app.screen.query_one("#vector-document-text", Static).render())
        head = str(app.screen.query_one("#vector-document-head", Static).render())
        assert text == TOPICS[0]["text"] and f"distance  {distances[0]:.4f}" in head and "kind: news" in head
        await pilot.press("escape")
        # An empty query: the page again.
        screen.query_one("#vectors-query", Input).value = ""
        await pilot.press("s", "enter")
        assert await _until(pilot, lambda: _idle(app) and not screen.page.query)
        assert [str(c.label) for c in table.columns.values()] == ["ID", "Text", "Metadata"]


async def test_a_collection_created_through_the_form_is_in_the_store(settings, tmp_path):
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot)
        await pilot.press("n")
        assert await _until(pilot, lambda: isinstance(app.screen, VectorForm))
        form = app.screen
        await pilot.press(*"x!", "enter")  # refused in the form, in one line
        assert await _until(pilot, lambda: "collection name 'x!'" in str(form.query_one("#form-error").render()))
        form.query_one("#form-name", Input).value = "handbook"
        assert form.query_one("#form-embedder", Select).value == "offline"
        form.query_one("#form-metadata", Input).value = '{"owner": "docs"}'
        await pilot.press("ctrl+s")
        assert await _until(pilot, lambda: _idle(app) and "handbook" in _keys(app, "vectors-collections"))
        assert screen.collection == "handbook"
        assert _cells(app, "vectors-collections", "handbook")[1:] == ["0", "-", "offline", "owner=docs"]
        # Files added through the form: a Markdown file, and JSON lines (one document a line).
        (tmp_path / "guide.md").write_text("# Guide\n\nRestart the service after an upgrade.\n")
        (tmp_path / "faq.jsonl").write_text('{"id": "q1", "text": "How do I back up?"}\n"Where are the logs?"\n')
        await pilot.press("a")
        assert await _until(pilot, lambda: isinstance(app.screen, VectorForm))
        await pilot.press(*f"{tmp_path / 'guide.md'} {tmp_path / 'faq.jsonl'}", "enter")
        assert await _until(pilot, lambda: _idle(app) and len(_keys(app, "vectors-documents")) == 3)
    store = open_store(settings)
    try:
        info = store.info("handbook")
        assert (info["count"], info["embedder"], info["metadata"]) == (3, "offline", {"owner": "docs"})
        assert sorted(d.id for d in store.page("handbook", limit=10)) == ["faq.jsonl:2", "guide.md", "q1"]
        assert store.get("handbook", "guide.md").metadata["kind"] == "markdown"
    finally:
        store.close()


async def test_a_document_deleted_after_confirmation_is_gone_from_the_store(settings):
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, "topics")
        table = screen.query_one("#vectors-documents", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index("markets"))
        await pilot.press("d")
        assert await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "markets" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("n")  # declined: nothing changes
        await pilot.pause()
        assert "markets" in _keys(app, "vectors-documents")
        await pilot.press("d")
        assert await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        assert await _until(pilot, lambda: _idle(app) and "markets" not in _keys(app, "vectors-documents"))
        assert _cells(app, "vectors-collections", "topics")[1] == "3"
        # The collection, after its own confirmation.
        screen.query_one("#vectors-collections", DataTable).focus()
        await pilot.press("D")
        assert await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "topics and its 3 document(s)" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        assert await _until(pilot, lambda: _idle(app) and _keys(app, "vectors-collections") == ["notes"])
    store = open_store(settings)
    try:
        assert store.names() == ["notes"]
    finally:
        store.close()


async def test_with_vectors_turned_off_the_screen_says_so_in_one_line(sqlite_settings):
    sqlite_settings.persistence.enable_vector_db = False
    app = MimirApp(sqlite_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, VectorsScreen)
        assert _status(app) == "the vector store is turned off (persistence.enable_vector_db: false)"
        assert not app.screen.query_one("#vectors-body").display
        await pilot.press("n")  # nothing to do, nothing fails
        await pilot.pause()
        assert isinstance(app.screen, VectorsScreen) and not app.screen._then
        await pilot.press("escape")
        assert not isinstance(app.screen, VectorsScreen)


async def test_a_server_that_does_not_answer_shows_loading_and_the_app_stays_responsive(sqlite_settings):
    """A server that accepts connections and never answers: the screen says it is loading and
    the keys still work (the worker holds the wait, not the event loop)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        sqlite_settings.vectors.server_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        sqlite_settings.vectors.timeout = 30
        app = MimirApp(sqlite_settings)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("v")
            await pilot.pause(0.5)
            screen = app.screen
            assert isinstance(screen, VectorsScreen) and screen._then
            assert _status(app) == "reading the collections..."
            await pilot.press("s", *"abc")
            assert screen.query_one("#vectors-query", Input).value == "abc"
            await pilot.press("escape", "escape")
            assert not isinstance(app.screen, VectorsScreen)


async def test_the_key_is_in_the_help_and_the_palette_and_the_health_pane_shows_the_store(settings):
    from mimir_tui.ops.overview import vector_rows
    from mimir_tui.tui.keys import actions
    from mimir_tui.tui.screens.help import help_markdown
    from mimir_tui.vectors.status import vector_status

    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        health = app.query_one("#health-table", DataTable)
        assert await _until(pilot, lambda: "vectors:contents" in [str(k.value) for k in health.rows])
        where = settings.persistence.vector_db_path
        assert [str(c) for c in health.get_row("vectors")] == ["vector store", f"embedded {where}, reachable"]
        assert str(health.get_row("vectors:contents")[1]).startswith("2 collections, 29 documents, ")
        assert "| `v` | Vectors |" in help_markdown(app.screen)
        assert "Vectors (Screen)" in [a.title for a in actions(app.screen)]
        run = next(a.run for a in actions(app.screen) if a.title == "Vectors (Screen)")
        app.call_later(run)  # as the command palette runs it
        assert await _until(pilot, lambda: _idle(app))
        assert _keys(app, "vectors-collections") == ["notes", "topics"]
        # While the screen is open this dashboard holds the embedded store (health says so);
        # once it is closed, the store is free for another process.
        rows = dict(vector_rows(vector_status(settings)))
        assert rows["vectors:holder"] == ("  held by", f"pid {os.getpid()} (this dashboard)")
        await pilot.press("escape")
        assert await _until(pilot, lambda: "in_use_by" not in vector_status(settings))


async def test_the_health_pane_shows_a_vector_server_that_is_away(sqlite_settings):
    """Nothing listens on the port: the store is shown unreachable, in one line naming it, and
    the database's health is read as ever."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sqlite_settings.vectors.server_url = f"http://127.0.0.1:{port}"
    app = MimirApp(sqlite_settings)
    async with app.run_test(size=(120, 40)) as pilot:
        health = app.query_one("#health-table", DataTable)
        assert await _until(pilot, lambda: "vectors:error" in [str(k.value) for k in health.rows])
        assert str(health.get_row("vectors")[1]) == f"server http://127.0.0.1:{port}, unreachable"
        assert str(health.get_row("vectors:error")[1]).startswith(f"vector server http://127.0.0.1:{port}: unreachable")
        assert str(health.get_row("status")[1]) == "healthy"


async def test_a_store_still_being_opened_when_the_screen_closes_is_let_go_once_opened(settings):
    """Another process holds the embedded store: the screen waits for it (loading...), is left,
    and when the other process lets go the store is opened and at once closed again, not kept
    by this dashboard for its life."""
    import subprocess
    import sys

    from mimir_tui.vectors.owner import LOCK_NAME
    from mimir_tui.vectors.status import vector_status

    settings.vectors.timeout = 60
    hold = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
        "os.pwrite(fd, b'%d\\n' % os.getpid(), 0); print('held', flush=True); sys.stdin.read()"
    )
    lock = f"{settings.persistence.vector_db_path}/{LOCK_NAME}"
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    other = subprocess.Popen([sys.executable, "-c", hold, lock], **pipes)
    try:
        assert other.stdout.readline().strip() == "held"
        app = MimirApp(settings)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("v")
            await pilot.pause(0.5)
            assert _status(app) == "reading the collections..."
            assert vector_status(settings)["in_use_by"] == f"pid {other.pid}"
            await pilot.press("escape")
            assert not isinstance(app.screen, VectorsScreen)
            other.stdin.close()  # the other process lets go: the waiting worker opens the store
            other.wait(10)
            assert await _until(pilot, lambda: "in_use_by" not in vector_status(settings), 60)
            await pilot.pause(1)
            assert "in_use_by" not in vector_status(settings)
    finally:
        other.kill()
        other.wait()
