"""``mimir-tui vectors ...`` as a process: output, ``--json`` and exit codes (0 done, 1 the
store failed, 2 bad input) as the rest of the command line."""

from __future__ import annotations

import json
from pathlib import Path


def config(tmp_path: Path, extra: str = "") -> str:
    """./config.yaml (found by the search order: the tests run in tmp_path/cwd)."""
    path = Path.cwd() / "config.yaml"
    path.write_text(f"persistence:\n  database_path: ./m.db\n  vector_db_path: ./vec\n{extra}")
    return str(path)


def test_create_add_show_query_get_delete(tmp_path: Path, run_cli) -> None:
    cfg = config(tmp_path)
    (tmp_path / "quantum.md").write_text("# Physics\nQuantum mechanics describes matter at atomic scales\n")
    (tmp_path / "more.jsonl").write_text(
        '{"id": "bio", "text": "Photosynthesis turns light into energy in plants", "metadata": {"s": "bio"}}\n'
        '"Machine learning finds patterns in data"\n'
    )
    created = run_cli("vectors", "create", "notes", "--config", cfg)
    assert (created.returncode, created.stdout) == (0, "created collection notes (embedder offline)\n")
    added = run_cli("vectors", "add", "notes", str(tmp_path / "quantum.md"), str(tmp_path / "more.jsonl"), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"collection": "notes", "added": 3, "total": 3}

    listed = json.loads(run_cli("vectors", "collections", "--json", "--config", cfg).stdout)
    assert [(c["name"], c["count"], c["dimension"], c["embedder"]) for c in listed] == [("notes", 3, 256, "offline")]

    shown = run_cli("vectors", "show", "notes", "--offset", "1", "--limit", "1", "--config", cfg)
    assert shown.returncode == 0 and shown.stdout.splitlines()[0] == "notes: documents 2-2 of 3"

    hits = json.loads(run_cli("vectors", "query", "notes", "green plants and light", "-n", "2", "--json").stdout)
    assert hits[0]["id"] == "bio" and hits[0]["distance"] < hits[1]["distance"]
    only = json.loads(run_cli("vectors", "query", "notes", "atoms", "--where", '{"s": "bio"}', "--json").stdout)
    assert [h["id"] for h in only] == ["bio"]

    got = json.loads(run_cli("vectors", "get", "notes", "more.jsonl:2", "--json").stdout)
    assert got["text"] == "Machine learning finds patterns in data" and got["metadata"]["line"] == 2

    deleted = run_cli("vectors", "delete", "notes", "bio", "nope")
    assert (deleted.returncode, deleted.stdout) == (0, "deleted 1 document(s) from notes (1 id(s) not found)\n")
    dropped = run_cli("vectors", "delete", "notes", "--json")
    assert json.loads(dropped.stdout) == {"collection": "notes", "deleted": "collection"}
    assert run_cli("vectors", "collections").stdout == "no collections\n"


def test_bad_input_is_exit_2_in_one_line(tmp_path: Path, run_cli) -> None:
    config(tmp_path)
    cases = [
        (("vectors", "show", "nope"), "mimir-tui: error: vector collection 'nope' does not exist"),
        (("vectors", "create", "x"), "mimir-tui: error: collection name 'x': 3 to 512 characters"),
        (("vectors", "query", "abc", "q", "--where", "{bad"), "mimir-tui: error: --where: not JSON"),
        (("vectors", "add", "abc", "missing.txt"), "mimir-tui: error: missing.txt: no such file"),
        (("vectors", "show", "abc", "--limit", "0"), "mimir-tui: error: --offset must be >= 0 and --limit 1 to"),
    ]
    for argv, start in cases:
        proc = run_cli(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.startswith(start) and proc.stderr.count("\n") == 1, proc.stderr


def test_vectors_turned_off_is_exit_1_naming_the_key(tmp_path: Path, run_cli) -> None:
    cfg = config(tmp_path, "  enable_vector_db: false\n")
    proc = run_cli("vectors", "collections")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"mimir-tui: error: the vector store is turned off (persistence.enable_vector_db: false in {cfg})\n"
    )
    assert not (Path.cwd() / "vec").exists()


def test_config_show_masks_a_password_in_the_vector_urls(tmp_path: Path, run_cli) -> None:
    config(tmp_path, "vectors:\n  server_url: http://mimir:s3cr3t-pw@127.0.0.1:8000\n")
    proc = run_cli("config", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)["settings"]["vectors"]
    assert "s3cr3t-pw" not in proc.stdout and shown["server_url"].startswith("http://mimir:")
    assert shown["embedding_url"] == "http://127.0.0.1:11434/v1"
