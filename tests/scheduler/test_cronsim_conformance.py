"""Conformance with cronsim, the reference for Debian cron's semantics in Python: its own test
cases (cronsim_cases/, vendored unchanged from its release) replayed against Mimir's cron.

- test_cronsim.py's iterator, DST and validation tests run through an adapter that presents
  Mimir as the ``CronSim`` class they call: its fires are those of ``next_fires``, the function
  ``mimir-tui jobs next`` calls; its errors name the field Mimir's error names.
- Its DST transitions (Europe/Riga, 2021) run through ``mimir-tui jobs next ... --json`` too.
- Every expression its parse tests accept, Mimir accepts.
- test_explain.py's readings are those of ``mimir-tui jobs next --explain``.

A case Mimir decides otherwise is in DIFFERENCES with the reason (README, Scheduling).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import types
import unittest
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mimir_tui.cli import main
from mimir_tui.scheduler.cron import CronError, describe, validate_cron
from mimir_tui.scheduler.jobs import next_fires

CASES = Path(__file__).with_name("cronsim_cases")


class CronSimError(Exception):
    pass


class CronSim:
    """cronsim's iterator over Mimir: naive times are UTC (returned naive), aware ones in their
    zone. cronsim says "Bad <field>" for a bad field and "Wrong number of fields" otherwise."""

    def __init__(self, expr: str, dt: datetime, reverse: bool = False) -> None:
        assert not reverse, "Mimir computes forward fires only"
        try:
            validate_cron(expr)
        except CronError as exc:
            raise CronSimError(f"Bad {exc.field}" if exc.field else "Wrong number of fields") from exc
        self.expr, self.naive = expr, dt.tzinfo is None
        self.tz = dt.tzinfo if isinstance(dt.tzinfo, ZoneInfo) else ZoneInfo("UTC")
        self.dt = dt.replace(tzinfo=UTC) if self.naive else dt

    def __iter__(self) -> CronSim:
        return self

    def __next__(self) -> datetime:
        self.dt = next_fires(self.expr, self.tz.key, start=self.dt, n=1).fires[0].astimezone(self.tz)
        return self.dt.replace(tzinfo=None) if self.naive else self.dt

    def explain(self) -> str:
        return describe(self.expr)


def load_upstream() -> types.ModuleType:
    """test_cronsim.py, its ``from cronsim import CronSim, CronSimError`` given the adapter."""
    adapter = types.ModuleType("cronsim")
    adapter.CronSim, adapter.CronSimError = CronSim, CronSimError  # type: ignore[attr-defined]
    spec = importlib.util.spec_from_file_location("cronsim_upstream_tests", CASES / "test_cronsim.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    real = sys.modules.get("cronsim")
    sys.modules["cronsim"] = adapter
    try:
        spec.loader.exec_module(module)
    finally:
        if real is None:
            del sys.modules["cronsim"]
        else:
            sys.modules["cronsim"] = real
    return module


UPSTREAM = load_upstream()
TREE = ast.parse((CASES / "test_cronsim.py").read_text())
RUN = {"TestIterator", "TestDstTransitions", "TestValidation", "TestExplain"}
NOT_RUN = {
    "TestParse": "asserts cronsim's parsed sets; its expressions are checked to be accepted instead",
    "TestReverse": "iterates backwards; Mimir computes forward fires only",
    "TestOptimizations": "asserts a cronsim internal (fixup_tz)",
}
DIFFERENCES = {
    "TestIterator.test_it_handles_no_matches": "Mimir refuses an expression that never fires when it is "
    "given (naming its day-of-month); cronsim accepts it and yields nothing",
}
EXPLAIN_DIFFERENCES = {
    "0 0 0/5 * *": "there is no day-of-month 0: Mimir refuses it, as cronsim's CronSim does (its explain() reads it)",
}


def upstream_classes() -> set[str]:
    classes = (value for value in vars(UPSTREAM).values() if isinstance(value, type))
    return {cls.__name__ for cls in classes if issubclass(cls, unittest.TestCase)}


def upstream_cases() -> list:
    cases = []
    for cls in sorted(RUN):
        for method in unittest.TestLoader().getTestCaseNames(getattr(UPSTREAM, cls)):
            case = f"{cls}.{method}"
            marks = [pytest.mark.xfail(strict=True, reason=DIFFERENCES[case])] if case in DIFFERENCES else []
            cases.append(pytest.param(cls, method, id=case, marks=marks))
    return cases


def test_every_upstream_test_class_is_run_or_skipped_for_a_reason():
    """A new class in an updated upstream file must be placed: run, or skipped with a reason."""
    assert upstream_classes() == RUN | set(NOT_RUN)


@pytest.mark.parametrize("cls,method", upstream_cases())
def test_upstream_case(cls, method):
    getattr(UPSTREAM, cls)(method).debug()


def test_the_fall_back_hour_of_an_every_minute_job_with_a_fixed_hour_range():
    """The known miss: ``* 1-6 * * *`` jumped from 03:59+03:00 to 04:00+02:00, leaving the
    repeated hour (an hour of real time) without a run."""
    UPSTREAM.TestDstTransitions("test_every_minute_from_1_to_6_oct").debug()


# -- the DST transitions through the command line ----------------------------------------------


def _class(name: str) -> ast.ClassDef:
    return next(n for n in TREE.body if isinstance(n, ast.ClassDef) and n.name == name)


def _calls(node: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name
    ]


def dst_cases() -> list:
    """(expression, start, expected fires) of each TestDstTransitions method, read with ``ast``."""
    cls = _class("TestDstTransitions")
    zone_name = next(c.args[0].value for c in _calls(cls, "ZoneInfo"))  # type: ignore[attr-defined]
    tz = ZoneInfo(zone_name)
    cases = []
    for method in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")):
        (now,) = _calls(method, "datetime")
        (sim,) = _calls(method, "CronSim")
        fold = {k.arg: ast.literal_eval(k.value) for k in now.keywords if k.arg == "fold"}
        start = datetime(*(ast.literal_eval(a) for a in now.args), tzinfo=tz, **fold)
        expected = [ast.literal_eval(c.args[1]) for c in _calls(method, "assertNextEqual")]
        cases.append(pytest.param(ast.literal_eval(sim.args[0]), zone_name, start, expected, id=method.name))
    return cases


@pytest.mark.parametrize("expr,zone_name,start,expected", dst_cases())
def test_dst_case_through_jobs_next(capsys, expr, zone_name, start, expected):
    argv = ["jobs", "next", "--cron", expr, "--tz", zone_name, "--from", start.astimezone(UTC).isoformat()]
    code = main([*argv, "-n", str(len(expected)), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["fires_local"] == expected


def test_the_dst_cases_are_read():
    assert len(dst_cases()) >= 33  # cronsim 2.6 has 33


# -- what cronsim accepts, Mimir accepts -------------------------------------------------------


def accepted_expressions() -> list[str]:
    """The expressions of the parse tests and of the reverse-iteration samples."""
    found = [ast.literal_eval(c.args[0]) for c in _calls(_class("TestParse"), "CronSim")]
    assigns = (n for n in _class("TestReverse").body if isinstance(n, ast.Assign))
    (samples,) = (n.value for n in assigns if ast.unparse(n.targets[0]) == "samples")
    return sorted(set(found) | set(ast.literal_eval(samples)))


@pytest.mark.parametrize("expr", accepted_expressions())
def test_expression_cronsim_accepts_is_accepted_and_read(expr):
    assert validate_cron(expr)
    assert describe(expr)


# -- the schedule in words ---------------------------------------------------------------------


def explain_cases() -> list:
    """The ``expression | reading`` lines of test_explain.py's class docstrings."""
    tree = ast.parse((CASES / "test_explain.py").read_text())
    cases = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for line in (ast.get_docstring(cls) or "").splitlines():
            if "|" in line:
                expr, words = (part.strip() for part in line.split("|"))
                reason = EXPLAIN_DIFFERENCES.get(expr)
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                cases.append(pytest.param(expr, words, id=f"{cls.name}:{expr}", marks=marks))
    return cases


@pytest.mark.parametrize("expr,words", explain_cases())
def test_explain_reads_as_cronsim_does(capsys, expr, words):
    # cronsim's explain() reads the first five fields (its smoke tests give two 6-field
    # expressions); Mimir's sixth field is seconds, so the adapter passes five.
    five = " ".join(expr.split()[:5])
    code = main(["jobs", "next", "--cron", five, "--tz", "UTC", "-n", "1", "--explain", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["explain"] == words


def test_explain_cases_are_read():
    assert len(explain_cases()) > 100
