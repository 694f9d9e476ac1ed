"""What README shows exists (issue 10, item 7): the folders and files it links to or names, and
screenshots of the dashboard as it is now (they showed schema 0005 when 0008 was current)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from mimir_tui.persistence.migrate import head_revision

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_files_and_folders_readme_links_to_exist():
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", README) if "://" not in t}
    targets.discard("")
    assert targets, "README links to no file"
    assert sorted(t for t in targets if not (REPO / t).exists()) == []


def test_the_folders_readme_names_exist():
    """A name in backquotes ending in ``/``, or one README says to see (it said "see
    `issues`", a folder the repository does not have), is in the repository or the package."""
    names = set(re.findall(r"`([\w./-]+/)`", README)) | set(re.findall(r"[Ss]ee `([^`]+)`", README))
    assert names
    missing = [n for n in sorted(names) if not (REPO / n).exists() and not (REPO / "mimir_tui" / n).exists()]
    assert missing == []


def test_the_screenshots_show_the_current_schema():
    """Each screenshot that shows the Health pane's schema_version shows the head revision, and
    one does. Regenerate them with ``python screenshots/make_screenshots.py`` after a migration."""
    shown = {}
    for svg in sorted((REPO / "screenshots").glob("*.svg")):
        text = html.unescape("".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text(encoding="utf-8"))))
        found = re.search(r"schema_version\s+(\S+)", text.replace("\xa0", " "))
        if found:
            shown[svg.name] = found.group(1)
    assert shown, "no screenshot shows schema_version"
    assert shown == dict.fromkeys(shown, head_revision()), "run screenshots/make_screenshots.py"
