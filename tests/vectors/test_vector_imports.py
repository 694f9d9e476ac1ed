"""chromadb (and wordllama) are imported only when vectors are used (issue 14, item 1): neither
the command line's start nor the dashboard's first paint pays for them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json, sys
    import mimir_tui.cli, mimir_tui.commands.vectors, mimir_tui.vectors, mimir_tui.tui.app
    from mimir_tui.pipelines.registry import default_registry
    default_registry()  # every built-in plugin, Storage.vector among them
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"chromadb", "wordllama"})))
""")


def loaded_after(code: str, cwd) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_cli_the_dashboard_and_the_plugins_do_not_import_chromadb(tmp_path):
    assert loaded_after(PROBE, tmp_path) == []


def test_using_the_store_does_import_them(tmp_path):
    """The check above is real: a vector command loads chromadb, an embedding loads wordllama."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from mimir_tui.cli import main
        open("config.yaml", "w").write("persistence:\\n  vector_db_path: {tmp_path / "v"}\\n")
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["vectors", "create", "abc"]) == 0
            assert main(["vectors", "query", "abc", "hello"]) == 0
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {{"chromadb", "wordllama"}})))
    """)
    assert loaded_after(code, tmp_path) == ["chromadb", "wordllama"]
