"""``Data_Processing.transform``: reshape data, typically an API response into records.

One ``operation`` with its keys, or ``operations: [...]`` applied in order. The data comes from
``data`` (inline; the runner has expanded templates) or ``input`` (a context key, dotted path
allowed: ``api_result.body.items``). The step's output is the transformed value itself.

Operations and their keys::

    select     fields: [a, b.c] | {new_name: path}          keep only these fields
    filter     field, op, value, ignore_case                keep records matching the condition
               op: eq ne gt ge lt le contains not_contains in not_in exists not_exists
                   regex startswith endswith  (also == != > >= < <=)
    map|rename mapping: {old: new}, keep (true)             rename keys (old may be a dotted path)
    split      separator (default: whitespace), field, target
    join       separator (default ", "), field
    regex|extract  pattern, group, all (true), ignore_case, field, target
    replace    pattern, replacement, ignore_case, field, target
    upper|lower|strip   field, target
    count      field, group_by                               number of items (or per group)
    aggregate  function: sum|avg|min|max|count, field, group_by
    sort       by (or field), reverse
    limit      limit, offset
    unique     by (or field)
    flatten                                                  a list of lists -> one list

Patterns are user input matched against data nobody vetted: they run on the ``regex`` package,
with the GIL released and a match timeout of the step's time left, so a catastrophic pattern
ends as a timed-out step instead of freezing the instance.

``field`` names a value inside each record (dotted path; ``.`` is the item itself). Text
operations work on a string, a list of strings, or, with ``field``, on that field of each record
(written back to ``target``, default the same field).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NoReturn, get_args

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..registry import Plugin, PluginConfig, PluginError, StepContext, StepTimedOut
from .common import MISSING, describe_keys, get_path, resolve_data, type_name

if TYPE_CHECKING:  # imported where a pattern is compiled: a service whose pipelines have none does not load it
    import regex

OpName = Literal[
    "select",
    "filter",
    "map",
    "rename",
    "split",
    "join",
    "regex",
    "extract",
    "replace",
    "upper",
    "lower",
    "strip",
    "count",
    "aggregate",
    "sort",
    "limit",
    "unique",
    "flatten",
]
OP_ALIASES = {
    "uppercase": "upper",
    "lowercase": "lower",
    "trim": "strip",
    "where": "filter",
    "pick": "select",
    "head": "limit",
    "dedupe": "unique",
    "distinct": "unique",
    "order_by": "sort",
}

FilterOp = Literal[
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "contains",
    "not_contains",
    "in",
    "not_in",
    "exists",
    "not_exists",
    "regex",
    "startswith",
    "endswith",
]
FILTER_ALIASES = {
    "==": "eq",
    "=": "eq",
    "equals": "eq",
    "!=": "ne",
    "<>": "ne",
    "neq": "ne",
    ">": "gt",
    ">=": "ge",
    "gte": "ge",
    "<": "lt",
    "<=": "le",
    "lte": "le",
    "matches": "regex",
    "match": "regex",
    "not in": "not_in",
    "notin": "not_in",
    "has": "exists",
    "starts_with": "startswith",
    "ends_with": "endswith",
}

AggFunction = Literal["sum", "avg", "min", "max", "count"]

# Which keys each operation reads; any other operation key given is an error naming it.
COMMON = {"operation"}
OP_KEYS: dict[str, set[str]] = {
    "select": {"fields"},
    "filter": {"field", "op", "value", "ignore_case"},
    "map": {"mapping", "keep"},
    "split": {"separator", "field", "target"},
    "join": {"separator", "field"},
    "regex": {"pattern", "group", "all_matches", "ignore_case", "field", "target"},
    "replace": {"pattern", "replacement", "ignore_case", "field", "target"},
    "upper": {"field", "target"},
    "count": {"field", "group_by"},
    "aggregate": {"function", "field", "group_by"},
    "sort": {"by", "field", "reverse"},
    "limit": {"limit", "offset"},
    "unique": {"by", "field"},
    "flatten": set(),
}
OP_KEYS["rename"] = OP_KEYS["map"]
OP_KEYS["extract"] = OP_KEYS["regex"]
OP_KEYS["lower"] = OP_KEYS["strip"] = OP_KEYS["upper"]

# Shown in errors under the name the user wrote.
SHOWN = {"all_matches": "all"}


def _canonical(value: Any, aliases: dict[str, str]) -> Any:
    """A name as written (any case, spaces around) -> the one the plugin uses."""
    if isinstance(value, str):
        value = value.strip().lower()
        return aliases.get(value, value)
    return value


class Operation(PluginConfig):
    """One operation and its keys."""

    operation: OpName = Field(description="what to do: " + ", ".join(get_args(OpName)))
    fields: list[str] | dict[str, str] | None = Field(None, description="select: paths to keep, or {new_name: path}")
    field: str | None = Field(None, description="the value inside each record (dotted path; '.' = the item)")
    op: FilterOp | None = Field(None, description="filter: comparison (default eq, or exists without value)")
    value: Any = Field(None, description="filter: the value to compare with")
    mapping: dict[str, str] | None = Field(None, description="map/rename: {old: new}")
    keep: bool = Field(True, description="map/rename: keep the fields not in mapping")
    separator: str | None = Field(None, description="split (default whitespace) / join (default ', ')")
    pattern: str | None = Field(None, description="regex/extract/replace: a Python regular expression")
    group: int | str | list[int | str] | None = Field(
        None,
        validation_alias=AliasChoices("group", "groups"),
        description="regex: group number(s) or name(s) to return",
    )
    all_matches: bool = Field(
        True, validation_alias=AliasChoices("all", "all_matches"), description="regex: every match (true) or the first"
    )
    ignore_case: bool = False
    replacement: str = Field("", description="replace: the replacement (\\1 refers to a group)")
    target: str | None = Field(
        None, validation_alias=AliasChoices("target", "as"), description="text ops on records: field to write"
    )
    function: AggFunction | None = Field(
        None,
        validation_alias=AliasChoices("function", "func", "agg"),
        description="aggregate: sum, avg, min, max or count",
    )
    group_by: str | None = Field(None, description="count/aggregate: one result per value of this field")
    by: str | None = Field(None, description="sort/unique: the field to order or compare by")
    reverse: bool = False
    limit: int | None = Field(None, ge=0, validation_alias=AliasChoices("limit", "n"), description="limit: how many")
    offset: int = Field(0, ge=0)

    @field_validator("operation", mode="before")
    @classmethod
    def _op_name(cls, value: Any) -> Any:
        return _canonical(value, OP_ALIASES)

    @field_validator("op", mode="before")
    @classmethod
    def _filter_op(cls, value: Any) -> Any:
        return _canonical(value, FILTER_ALIASES)

    @field_validator("function", mode="before")
    @classmethod
    def _function(cls, value: Any) -> Any:
        return _canonical(value, {"mean": "avg", "average": "avg", "total": "sum"})

    @model_validator(mode="after")
    def _check(self) -> Operation:
        if self.operation is not None:
            check_operation(self, self.model_fields_set - _NON_OP_KEYS)
        return self


_NON_OP_KEYS = {"input", "data", "operations"}


def _fail(message: str) -> NoReturn:
    raise ValueError(message)


def check_operation(op: Operation, given: set[str]) -> None:
    name = op.operation
    allowed = OP_KEYS[name] | COMMON
    extra = sorted(SHOWN.get(k, k) for k in given - allowed)
    if extra:
        reads = ", ".join(sorted(SHOWN.get(k, k) for k in OP_KEYS[name])) or "nothing"
        _fail(f"{', '.join(extra)} does not apply to operation {name!r} (it reads: {reads})")
    if name == "select" and not op.fields:
        _fail("operation 'select' needs 'fields' (a list of field paths or {new_name: path})")
    if name == "filter":
        if not op.field:
            _fail("operation 'filter' needs 'field' (the field of each record to test)")
        if op.op is None:
            op.op = "eq" if "value" in given else "exists"
        if op.op in ("in", "not_in") and not isinstance(op.value, (list, tuple, str, dict)):
            _fail(f"filter op {op.op!r} needs 'value' to be a list (got {type_name(op.value)})")
        if op.op == "regex":
            if not isinstance(op.value, str):
                _fail("filter op 'regex' needs 'value' to be a pattern (text)")
            _compile(op.value, op.ignore_case)
        if op.op not in ("exists", "not_exists") and "value" not in given:
            _fail(f"filter op {op.op!r} needs a 'value'")
    if name in ("map", "rename") and not op.mapping:
        _fail(f"operation {name!r} needs 'mapping' ({{old_name: new_name}})")
    if name in ("regex", "extract", "replace"):
        if not op.pattern:
            _fail(f"operation {name!r} needs 'pattern'")
        compiled = _compile(op.pattern, op.ignore_case)
        groups = op.group if isinstance(op.group, list) else ([] if op.group is None else [op.group])
        for g in groups:
            if isinstance(g, int) and not 0 <= g <= compiled.groups:
                _fail(f"group {g} is not in pattern {op.pattern!r} (it has {compiled.groups} group(s))")
            if isinstance(g, str) and g not in compiled.groupindex:
                known = ", ".join(compiled.groupindex) or "none"
                _fail(f"group {g!r} is not in pattern {op.pattern!r} (named groups: {known})")
    if name == "aggregate":
        if op.function is None:
            _fail("operation 'aggregate' needs 'function' (sum, avg, min, max or count)")
        if op.function != "count" and not op.field:
            _fail(f"aggregate {op.function} needs 'field' (the numbers to {op.function})")
    if name == "limit" and op.limit is None:
        _fail("operation 'limit' needs 'limit' (how many items to keep)")
    if op.by and op.field and op.by != op.field:
        _fail("give 'by' or 'field', not both")


@lru_cache(maxsize=256)
def _compile(pattern: str, ignore_case: bool) -> regex.Pattern[str]:
    import regex

    try:
        return regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


#: When the running step's time is up (``time.monotonic()``), or None: set by
#: :func:`apply_operations` for the thread it runs in.
_deadline: ContextVar[float | None] = ContextVar("transform_deadline", default=None)

#: The longest one match may take when the step has no time limit.
MATCH_TIMEOUT = 60.0


def _match(pattern: regex.Pattern[str], how: str, *args: Any) -> Any:
    """``pattern.<how>(*args)`` (search, finditer, sub) with the GIL released and a timeout of
    the step's time left: a pattern that backtracks without end fails its step, alone."""
    deadline = _deadline.get()
    timeout = MATCH_TIMEOUT if deadline is None else max(0.01, deadline - time.monotonic())
    try:
        result = getattr(pattern, how)(*args, timeout=timeout, concurrent=True)
        return list(result) if how == "finditer" else result
    except TimeoutError:
        raise StepTimedOut(
            f"pattern {pattern.pattern!r} did not finish matching within {timeout:.3g}s (catastrophic backtracking?)"
        ) from None


class TransformConfig(Operation):
    # Optional here, required in Operation: pydantic allows a subclass to widen a field, mypy does not.
    operation: OpName | None = Field(None, description="one operation (or give 'operations')")  # type: ignore[assignment]
    input: str | None = Field(None, description="context key to read (dotted path allowed)")
    data: Any = Field(None, description="the data inline (instead of input)")
    operations: list[Operation] | None = Field(None, description="operations applied in order")

    @model_validator(mode="after")
    def _one_way(self) -> TransformConfig:
        if self.operations is not None:
            stray = sorted(SHOWN.get(k, k) for k in self.model_fields_set - _NON_OP_KEYS)
            if stray:
                raise ValueError(f"with 'operations', put {', '.join(stray)} inside an operation")
            if not self.operations:
                raise ValueError("'operations' is empty")
        elif self.operation is None:
            raise ValueError("give 'operation' (one of " + ", ".join(get_args(OpName)) + ") or 'operations'")
        if self.input is not None and self.data is not None:
            raise ValueError("give 'input' or 'data', not both")
        return self

    def steps(self) -> list[Operation]:
        return list(self.operations) if self.operations is not None else [self]


# -- helpers -------------------------------------------------------------------------------------


def _records(data: Any, op: str, *, allow_dict: bool = False) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, tuple):
        return list(data)
    if allow_dict and isinstance(data, dict):
        return [data]
    hint = ""
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        hint = f"; its keys: {describe_keys(data)}"
        if lists:
            hint += f" (lists under: {', '.join(lists[:5])}; point 'input' at one, e.g. input: <key>.{lists[0]})"
    raise PluginError(f"{op} expects a list, got {type_name(data)}{hint}")


def _present_somewhere(records: list[Any], path: str) -> bool:
    return any(get_path(r, path) is not MISSING for r in records)


def _require_field(records: list[Any], path: str, op: str, key: str = "field") -> None:
    """A field no record has is almost always a typo: say so, with the fields there are."""
    if records and not _present_somewhere(records, path):
        sample = next((r for r in records if isinstance(r, dict)), records[0])
        raise PluginError(f"{op}: {key} {path!r} is not in any record (fields: {describe_keys(sample)})")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return number if math.isfinite(number) else None
    return None


def _pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Compare numbers with numeric text as numbers (CSV cells are text)."""
    if (
        isinstance(a, (int, float))
        and not isinstance(a, bool)
        or isinstance(b, (int, float))
        and not isinstance(b, bool)
    ):
        na, nb = _number(a), _number(b)
        if na is not None and nb is not None:
            return na, nb
    return a, b


def _fold(value: Any, ignore_case: bool) -> Any:
    if ignore_case:
        if isinstance(value, str):
            return value.casefold()
        if isinstance(value, list):
            return [_fold(v, True) for v in value]
    return value


def matches(op: str, actual: Any, expected: Any, ignore_case: bool = False) -> bool:
    present = actual is not MISSING and actual is not None
    if op == "exists":
        return present
    if op == "not_exists":
        return not present
    if actual is MISSING:
        actual = None
    if op in ("eq", "ne"):
        a, b = _pair(_fold(actual, ignore_case), _fold(expected, ignore_case))
        return (a == b) == (op == "eq")
    if op in ("gt", "ge", "lt", "le"):
        if not present or expected is None:
            return False
        a, b = _pair(_fold(actual, ignore_case), _fold(expected, ignore_case))
        if isinstance(a, str) and isinstance(b, str):  # "120" > "45" as numbers when both are
            na, nb = _number(a), _number(b)
            if na is not None and nb is not None:
                a, b = na, nb
        try:
            return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
        except TypeError:
            return False
    if op in ("contains", "not_contains"):
        if not present:
            return op == "not_contains"
        a, b = _fold(actual, ignore_case), _fold(expected, ignore_case)
        if isinstance(a, str):
            found = str(b) in a
        elif isinstance(a, (list, tuple, set, dict)):
            found = b in a or (
                _number(b) is not None and any(_pair(x, b)[0] == _pair(x, b)[1] for x in a if not isinstance(a, dict))
            )
        else:
            found = False
        return found == (op == "contains")
    if op in ("in", "not_in"):
        a, b = _fold(actual, ignore_case), _fold(expected, ignore_case)
        if isinstance(b, str):
            found = isinstance(a, str) and a in b
        else:
            found = any(_pair(a, x)[0] == _pair(a, x)[1] for x in b)
        return found == (op == "in")
    if op == "regex":
        return present and _match(_compile(expected, ignore_case), "search", str(actual)) is not None
    if op in ("startswith", "endswith"):
        if not present:
            return False
        a, b = str(_fold(actual, ignore_case)), str(_fold(expected, ignore_case))
        return a.startswith(b) if op == "startswith" else a.endswith(b)
    raise PluginError(f"unknown filter op {op!r}")  # pragma: no cover - Literal prevents it


def _sort_key(value: Any) -> tuple[int, Any]:
    number = _number(value)
    if number is not None:
        return (0, number)
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, default=str))


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)


def _set_field(record: Any, path: str, value: Any, op: str) -> Any:
    if not isinstance(record, dict):
        raise PluginError(f"{op} with a field expects records (dicts), got {type_name(record)}")
    out = dict(record)
    out[path] = value
    return out


# -- operations ----------------------------------------------------------------------------------


def op_select(op: Operation, data: Any) -> Any:
    single = isinstance(data, dict)
    records = _records(data, "select", allow_dict=True)
    spec = op.fields if isinstance(op.fields, dict) else {f: f for f in op.fields or []}
    for path in spec.values():
        _require_field(records, path, "select")
    out = []
    for record in records:
        if not isinstance(record, dict):
            raise PluginError(f"select expects records (dicts), got a list item that is {type_name(record)}")
        row = {}
        for new, path in spec.items():
            found = get_path(record, path)
            row[new] = None if found is MISSING else found
        out.append(row)
    return out[0] if single else out


def op_filter(op: Operation, data: Any) -> Any:
    records = _records(data, "filter")
    assert op.field and op.op
    if op.op not in ("exists", "not_exists"):
        _require_field(records, op.field, "filter")
    return [r for r in records if matches(op.op, get_path(r, op.field), op.value, op.ignore_case)]


def op_map(op: Operation, data: Any) -> Any:
    single = isinstance(data, dict)
    records = _records(data, op.operation, allow_dict=True)
    mapping = op.mapping or {}
    for old in mapping:
        _require_field(records, old, op.operation, "key")
    out = []
    for record in records:
        if not isinstance(record, dict):
            raise PluginError(f"{op.operation} expects records (dicts), got a list item that is {type_name(record)}")
        row: dict[str, Any] = {}
        for key, value in record.items():
            if key in mapping:
                row[mapping[key]] = value
            elif op.keep:
                row.setdefault(key, value)
        for old, new in mapping.items():
            if old not in record:  # a dotted path: copy the nested value
                found = get_path(record, old)
                row[new] = None if found is MISSING else found
        out.append(row)
    return out[0] if single else out


def _text_op(op: Operation, data: Any, fn: Callable[[str], Any]) -> Any:
    name = op.operation
    if op.field:
        single = isinstance(data, dict)
        records = _records(data, name, allow_dict=True)
        _require_field(records, op.field, name)
        out = []
        for record in records:
            value = get_path(record, op.field)
            if value is MISSING or value is None:
                out.append(record)
                continue
            if op.field in (".", "") and not isinstance(record, dict):
                out.append(fn(_as_text(value, name)))
                continue
            out.append(_set_field(record, op.target or op.field, fn(_as_text(value, name)), name))
        return out[0] if single else out
    if isinstance(data, str):
        return fn(data)
    if isinstance(data, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in data):
        return [fn(str(x)) for x in data]
    raise PluginError(f"{name} works on text or a list of texts (or records with 'field'), got {type_name(data)}")


def _as_text(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise PluginError(f"{name} works on text, got {type_name(value)}")


def op_split(op: Operation, data: Any) -> Any:
    sep = op.separator if op.separator != "" else None
    return _text_op(op, data, lambda text: text.split(sep))


def op_join(op: Operation, data: Any) -> Any:
    sep = ", " if op.separator is None else op.separator
    items = _records(data, "join")
    if op.field:
        _require_field(items, op.field, "join")
        items = [get_path(item, op.field) for item in items]
    parts = []
    for item in items:
        if item is None or item is MISSING:
            parts.append("")
        elif isinstance(item, (dict, list)):
            parts.append(json.dumps(item, ensure_ascii=False, default=str))
        else:
            parts.append(str(item))
    return sep.join(parts)


def op_regex(op: Operation, data: Any) -> Any:
    pattern = _compile(op.pattern or "", op.ignore_case)

    def one(m: regex.Match[str]) -> Any:
        if isinstance(op.group, list):
            return [m.group(g) for g in op.group]
        if op.group is not None:
            return m.group(op.group)
        if pattern.groupindex:
            return m.groupdict()
        if pattern.groups == 1:
            return m.group(1)
        if pattern.groups > 1:
            return list(m.groups())
        return m.group(0)

    def extract(text: str) -> Any:
        if op.all_matches:
            return [one(m) for m in _match(pattern, "finditer", text)]
        m = _match(pattern, "search", text)
        return one(m) if m else None

    return _text_op(op, data, extract)


def op_replace(op: Operation, data: Any) -> Any:
    pattern = _compile(op.pattern or "", op.ignore_case)

    def sub(text: str) -> str:
        import regex

        try:
            return _match(pattern, "sub", op.replacement, text)
        except (regex.error, IndexError) as exc:
            raise PluginError(f"replace: bad replacement {op.replacement!r}: {exc}") from None

    return _text_op(op, data, sub)


def op_case(op: Operation, data: Any) -> Any:
    cases: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower, "strip": str.strip}
    fn = cases[op.operation]
    return _text_op(op, data, fn)


def _groups(records: list[Any], path: str, op: str) -> dict[Any, list[Any]]:
    _require_field(records, path, op, "group_by")
    groups: dict[Any, list[Any]] = {}
    for record in records:
        key = get_path(record, path)
        groups.setdefault(_hashable(None if key is MISSING else key), []).append(record)
    return groups


def op_count(op: Operation, data: Any) -> Any:
    if op.group_by:
        records = _records(data, "count")
        groups = _groups(records, op.group_by, "count")
        rows = [{op.group_by: _group_value(g[0], op.group_by), "count": len(g)} for g in groups.values()]
        rows.sort(key=lambda r: -r["count"])
        return rows
    if op.field:
        records = _records(data, "count")
        _require_field(records, op.field, "count")
        return sum(1 for r in records if get_path(r, op.field) not in (MISSING, None))
    if isinstance(data, (list, tuple, dict, str)):
        return len(data)
    if data is None:
        return 0
    raise PluginError(f"count works on a list, an object or text, got {type_name(data)}")


def _group_value(record: Any, path: str) -> Any:
    found = get_path(record, path)
    return None if found is MISSING else found


def aggregate_values(function: str, values: list[Any], field: str | None) -> Any:
    if function == "count":
        return len(values)
    present = [v for v in values if v is not None and v is not MISSING]
    numbers = [_number(v) for v in present]
    if function in ("sum", "avg"):
        bad = next((v for v, n in zip(present, numbers, strict=True) if n is None), MISSING)
        if bad is not MISSING:
            raise PluginError(f"aggregate {function}: field {field!r} has a value that is not a number: {bad!r}")
        if not numbers:
            return 0 if function == "sum" else None
        # Decimal arithmetic on the numbers as written: 0.1 + 0.2 is 0.3, not 0.30000000000000004.
        total = sum((Decimal(repr(n)) for n in numbers), Decimal(0))
        if function == "sum":
            return int(total) if all(isinstance(n, int) for n in numbers) else float(total)
        return float(total / len(numbers))
    if not present:
        return None
    known = [n for n in numbers if n is not None]
    if len(known) == len(numbers):  # all numbers: compared as numbers ("10" > "9")
        return min(known) if function == "min" else max(known)
    try:
        return min(present) if function == "min" else max(present)
    except TypeError:
        raise PluginError(f"aggregate {function}: field {field!r} mixes values that cannot be compared") from None


def op_aggregate(op: Operation, data: Any) -> Any:
    records = _records(data, "aggregate")
    function = op.function or "count"
    if op.field:
        _require_field(records, op.field, "aggregate")

    def values(rows: list[Any]) -> list[Any]:
        if not op.field:
            return rows
        return [get_path(r, op.field) for r in rows]

    if not op.group_by:
        return aggregate_values(function, values(records), op.field)
    out = []
    for rows in _groups(records, op.group_by, "aggregate").values():
        row = {op.group_by: _group_value(rows[0], op.group_by), "count": len(rows)}
        if function != "count":
            row[function] = aggregate_values(function, values(rows), op.field)
        out.append(row)
    return out


def op_sort(op: Operation, data: Any) -> Any:
    records = _records(data, "sort")
    by = op.by or op.field
    if by:
        _require_field(records, by, "sort", "by")
        keyed = [(get_path(r, by), r) for r in records]
    else:
        keyed = [(r, r) for r in records]
    present = [(k, r) for k, r in keyed if k is not MISSING and k is not None]
    missing = [r for k, r in keyed if k is MISSING or k is None]
    present.sort(key=lambda kr: _sort_key(kr[0]), reverse=op.reverse)
    return [r for _, r in present] + missing  # records without the field go last either way


def op_limit(op: Operation, data: Any) -> Any:
    records = _records(data, "limit")
    end = None if op.limit is None else op.offset + op.limit
    return records[op.offset : end]


def op_unique(op: Operation, data: Any) -> Any:
    records = _records(data, "unique")
    by = op.by or op.field
    if by:
        _require_field(records, by, "unique", "by")
    seen: set[Any] = set()
    out = []
    for record in records:
        key = _hashable(get_path(record, by) if by else record)
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def op_flatten(op: Operation, data: Any) -> Any:
    records = _records(data, "flatten")
    out: list[Any] = []
    for item in records:
        if isinstance(item, (list, tuple)):
            out.extend(item)
        else:
            out.append(item)
    return out


HANDLERS: dict[str, Callable[[Operation, Any], Any]] = {
    "select": op_select,
    "filter": op_filter,
    "map": op_map,
    "rename": op_map,
    "split": op_split,
    "join": op_join,
    "regex": op_regex,
    "extract": op_regex,
    "replace": op_replace,
    "upper": op_case,
    "lower": op_case,
    "strip": op_case,
    "count": op_count,
    "aggregate": op_aggregate,
    "sort": op_sort,
    "limit": op_limit,
    "unique": op_unique,
    "flatten": op_flatten,
}


def apply_operations(steps: list[Operation], data: Any, timeout: float | None = None) -> Any:
    """Apply the operations in order; an error names the operation (and its index in a list).
    ``timeout``: seconds every pattern match together may take (the step's time left)."""
    _deadline.set(None if timeout is None else time.monotonic() + timeout)
    value = copy.deepcopy(data)  # never change the context's objects
    for index, op in enumerate(steps):
        assert op.operation is not None
        try:
            value = HANDLERS[op.operation](op, value)
        except PluginError as exc:
            if len(steps) > 1:
                raise PluginError(f"operations[{index}] ({op.operation}): {exc}") from None
            raise
    return value


class Transform(Plugin):
    type = "Data_Processing"
    name = "transform"
    description = (
        "Reshape data: select, filter, map/rename, split, join, regex/extract, replace, count, aggregate,"
        " sort, limit, unique, flatten."
    )
    Config = TransformConfig

    def execute(self, config: TransformConfig, ctx: StepContext) -> Any:
        data = resolve_data(config.data, config.input, ctx)
        return apply_operations(config.steps(), data, ctx.timeout)
