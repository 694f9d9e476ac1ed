"""Cron schedules in an IANA timezone, with Debian cron's semantics (as cronsim implements them).

Expressions have 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds
(croniter's convention: seconds last; :func:`seconds_first_warning` says when one looks written
seconds first, as Quartz and Spring write them); the ``@hourly``-style nicknames are accepted. Besides
Debian cron's syntax, cronsim's ``L`` and ``LW`` (day-of-month) and ``nL`` and ``n#k``
(day-of-week) are read as cronsim reads them, and croniter's ``nW`` (the weekday nearest day n)
too. tests/scheduler/test_cronsim_conformance.py replays cronsim's own test cases.

An expression is compiled into the croniter expressions whose union it is (croniter does not
take ``LW``, ``5L``, a ``W`` or ``#`` term in a list, nor Debian's rule for the two day fields:
a day must match both when either starts with ``*``, else either). croniter walks the *local
wall clock* (naive times); this module maps each wall-clock match to real instants, as Debian
cron does:

- A fixed-time job (neither the minute nor the hour field starts with ``*``) runs once per
  local day on both DST transition days: a wall-clock time that occurs twice (fall back) fires
  at its first occurrence only; a time skipped by spring forward fires right after the jump
  (several skipped times of one job fire once).
- A wildcard job (the minute or the hour field starts with ``*``: ``* 1-6 * * *``,
  ``0 */2 * * *``) runs in real time: a repeated hour fires twice (it is two real hours), a
  skipped hour not at all (it never happened).

A next fire takes one croniter look-up (two or three across an offset change), whatever the job
and however near a DST change: the zone's changes are found by comparing offsets and bisecting
to the second, never by walking matches one by one (``CronSchedule.next_after``).
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import product
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from ..errors import BadInput
from ..inputs import zone_info

_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week", "second")
_DOM, _MONTH, _DOW = 2, 3, 4
_VALUES = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L (the last day), LW (the last weekday) or nW (the weekday nearest day n)",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday), nL (the last weekday n of the month) "
    "or n#k (the k-th weekday n of the month)",
    "second": "0-59",
}
_NAMES = {
    _MONTH: "_ JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(),
    _DOW: "SUN MON TUE WED THU FRI SAT".split(),
}
# croniter's own extensions, which are not cron: H (hashed) and R (random) values.
_NOT_CRON = re.compile(r"[HR](\(|/|$)")
# tzdata's offset changes since 1900 are at least four days apart, and none sets the clock back
# by a day or more (the most, 23 hours: Kwajalein, 1969). So a zone's offset changes at most
# once within _NEAR of an instant, and when it holds for _NEAR after an instant, the wall clock
# never again shows a time it showed before that instant. test_cron_transitions.py checks both
# against the installed tzdata.
_NEAR = timedelta(days=1)
_TICK = timedelta(microseconds=1)


class CronError(BadInput):
    """A cron expression or timezone that cannot be used; the message names it (and ``field``,
    when one field is at fault, its name: minute, hour, day-of-month, month, day-of-week, second)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    try:
        return zone_info(name)
    except ValueError as exc:
        raise CronError(str(exc)) from None


def validate_cron(expr: str) -> str:
    """The expression, normalised (single spaces); :class:`CronError` names what is wrong."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError("cron expression is empty")
    text = " ".join(expr.split())
    if text.startswith("@"):
        text = text.lower()
    try:
        _compile(text)
    except CronError as exc:
        rotated = _seconds_first(text)
        if rotated is None or not _compiles(rotated):
            raise
        raise CronError(
            f"{exc}; Mimir reads a 6th field as the seconds: if they come first (Quartz, Spring), write {rotated!r}",
            exc.field,
        ) from None
    return text


def _compiles(text: str) -> bool:
    try:
        _compile(text)
    except CronError:
        return False
    return True


def _seconds_first(text: str) -> str | None:
    """A six-field expression read as if its seconds came first (Quartz, Spring), in Mimir's
    order (seconds last): its first field moved to the end, Quartz's ``?`` as ``*``. None for
    any other expression."""
    fields = text.split(" ")
    return " ".join([*fields[1:], fields[0]]).replace("?", "*") if len(fields) == 6 else None


#: A range or list of the values 0-7 alone (``1-5``, ``0,6``): days of the week, as seconds.
_WEEKDAYS_LIKE = re.compile(r"[0-7](?:[-,][0-7])+")


def seconds_first_warning(expr: str) -> str | None:
    """A warning, in one line, when a six-field expression looks as if its seconds were meant
    first (Quartz, Spring) where Mimir, as croniter, reads them last; None otherwise.

    An expression is suspect when its seconds-first reading is a valid expression too and:

    - its last field is ``*``, ``?`` or ``*/1`` while the others are not all ``*``: read as
      seconds it fires every second of each minute it matches (``*/5 * * * * *``: every
      second of every fifth minute; ``0 0 * * * *``: 60 times at midnight), which is hardly
      ever meant, and is what a seconds-first expression ends with (its day-of-week);
    - or its last field is a range or list of the values 0-7 (``0 0 9 * * 1-5``): days of the
      week, read as seconds;
    - or its fourth field is ``?`` (``0 15 10 ? * 6``): Quartz's "no specific day of the
      month", here in the month's place.

    A single number last (``0 2 * * * 5``) is taken at its word (at second 5), as is any
    expression whose seconds-first reading is not valid (that reading cannot have been meant);
    an invalid one whose seconds-first reading is valid is refused with that reading as a hint
    (:func:`validate_cron`).
    """
    text = validate_cron(expr)
    rotated = _seconds_first(text)
    if rotated is None or not _compiles(rotated):
        return None
    fields = text.split(" ")
    last = fields[5]
    if last in ("*", "?", "*/1") and any(f not in ("*", "?") for f in fields[:5]):
        reason = f"its last field, {last}, fires it every second of each minute it matches"
    elif _WEEKDAYS_LIKE.fullmatch(last):
        reason = f"its last field, {last}, reads like days of the week"
    elif fields[3] == "?":
        reason = "its ? in the fourth field (the month here) is how Quartz says no specific day of the month"
    else:
        return None
    return (
        f"cron expression {text!r} has 6 fields, the last read as the seconds (croniter's convention): "
        f"{describe(text)!r}; {reason}. If the seconds come first (Quartz, Spring), write {rotated!r}: "
        f"{describe(rotated)!r}"
    )


def _fields(text: str) -> list[str]:
    """The fields of a normalised expression, nicknames spelled out, upper case, ``?`` as ``*``."""
    if text.startswith("@"):
        if text not in _NICKNAMES:
            raise CronError(f"cron expression {text!r}: unknown nickname (use one of {', '.join(sorted(_NICKNAMES))})")
        text = _NICKNAMES[text]
    fields = text.upper().replace("?", "*").split(" ")
    if len(fields) not in (5, 6):
        raise CronError(
            f"cron expression {text!r} has {len(fields)} fields; use 5 (minute hour day-of-month month "
            f"day-of-week) or 6 (with seconds last)"
        )
    return fields


def _croniter_term(index: int, term: str) -> str:
    """A term in croniter's syntax: ``LW`` is ``31W`` (croniter's nearest weekday stops at the
    month's end), ``5L`` is ``L5``; a step on ``L`` or ``LW`` is ignored, as cronsim does."""
    if index == _DOM and (last := re.fullmatch(r"(LW?)(?:/[1-9][0-9]*)?", term)):
        return "31W" if last[1] == "LW" else "L"
    if index == _DOW and (last := re.fullmatch(r"([0-7])L", term)):
        return f"L{last[1]}"
    return term


def _alone(index: int, term: str) -> bool:
    """A term croniter takes only alone in its field: a W day, an nth or a last weekday."""
    if index == _DOM:
        return "W" in term
    return index == _DOW and ("#" in term or term.startswith("L"))


def _value(index: int, text: str) -> int | None:
    if text.isascii() and text.isdigit():
        return int(text)
    names = _NAMES.get(index, [])
    return names.index(text) if text in names else None


def _check_term(text: str, count: int, index: int, term: str) -> None:
    """Refuses a term (in croniter's syntax) of field ``index`` of ``text``, naming the field."""

    def bad(why: str = "") -> CronError:
        name, written = _FIELDS[index], text.split(" ")[index]
        reason = f" ({why})" if why else ""
        return CronError(
            f"cron expression {text!r}: bad {name} {written!r}{reason}; {name} takes {_VALUES[name]}, "
            f"with *, lists a,b, ranges a-b and steps */n or a-b/n",
            field=name,
        )

    if not term:
        raise bad("an empty list item")
    if _NOT_CRON.match(term):
        raise bad("H and R are not cron")
    span = term.split("/", 1)[0].split("-")
    if len(span) == 2:
        low, high = (_value(index, end) for end in span)
        if low is not None and high is not None and low > high:
            raise bad(f"the range {span[0]}-{span[1]} runs backwards")
    probe = ["*"] * count
    probe[index] = term
    try:
        croniter(" ".join(probe), datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError, TypeError, IndexError):
        raise bad() from None


@dataclass(frozen=True)
class _Compiled:
    variants: tuple[str, ...]  # croniter expressions (day_or=False) whose union is the schedule
    wildcard: bool  # the minute or hour field starts with *: the job runs in real time


@lru_cache(maxsize=512)
def _compile(text: str) -> _Compiled:
    fields = _fields(text)
    groups: dict[int, list[str]] = {}  # per field: its terms croniter takes together, then the others
    for index, value in enumerate(fields):
        terms = [_croniter_term(index, term) for term in value.split(",")]
        for term in terms:
            _check_term(text, len(fields), index, term)
        plain = ",".join(term for term in terms if not _alone(index, term))
        groups[index] = ([plain] if plain else []) + [term for term in terms if _alone(index, term)]
    # Debian cron: when the day-of-month or the day-of-week field starts with *, a day must match
    # both; otherwise a day matching either is enough.
    if fields[_DOM].startswith("*") or fields[_DOW].startswith("*"):
        days = list(product(groups[_DOM], groups[_DOW]))
    else:
        days = [(dom, "*") for dom in groups[_DOM]] + [("*", dow) for dow in groups[_DOW]]
    variants = tuple(" ".join([*fields[:_DOM], dom, fields[_MONTH], dow, *fields[_DOW + 1 :]]) for dom, dow in days)
    # A date that never comes (0 0 30 2 *): croniter parses it, then never finds a fire.
    if next(_wall_times(variants, datetime(2000, 1, 1)), None) is None:
        raise CronError(
            f"cron expression {text!r} never fires: no date has day-of-month {fields[_DOM]!r} in month "
            f"{fields[_MONTH]!r} with day-of-week {fields[_DOW]!r}",
            field=_FIELDS[_DOM],
        )
    return _Compiled(variants, fields[0].startswith("*") or fields[1].startswith("*"))


def _croniter_times(expr: str, start: datetime) -> Iterator[datetime]:
    it = croniter(expr, start, day_or=False)
    while True:
        try:
            yield it.get_next(datetime)
        except CroniterBadDateError:  # no further date within croniter's 50 years
            return


def _wall_times(variants: tuple[str, ...], start: datetime) -> Iterator[datetime]:
    """Wall-clock matches strictly after ``start`` (naive), ascending, each once (a match is
    yielded before the next one is computed: the caller often needs one only)."""
    if len(variants) == 1:
        yield from _croniter_times(variants[0], start)
        return
    last = None
    for match in heapq.merge(*(_croniter_times(v, start) for v in variants)):
        if match != last:
            yield match
            last = match


def describe(expr: str) -> str:
    """The schedule in words, as cronsim reads it (Debian cron's rule for the two day fields, ``L``,
    ``LW``, ``nL``, ``n#k``), with Mimir's ``nW`` and seconds: ``1 1 * * 5L`` reads "At 01:01 on
    the last Friday of the month"."""
    from cronsim import explain

    fields = _fields(validate_cron(expr))
    nearest = re.fullmatch(r"([0-9]+)W|W([0-9]+)", fields[_DOM])
    if nearest:
        day = int(nearest[1] or nearest[2])
        fields[_DOM] = str(day)
    fields[_DOW] = re.sub(r"\bL([0-7])\b", r"\1L", fields[_DOW])  # croniter's L5 is cronsim's 5L
    words = explain.explain(" ".join(fields[:5]))
    if nearest:
        # The day is named "the 15th day" or, with a single month, "January 15".
        named = rf"the {explain.ordinal(day)} day|\b(?:{'|'.join(explain.Month.labels[1:])}) {day}\b"
        words = re.sub(named, lambda m: f"the weekday nearest {m[0]}", words, count=1)
    if len(fields) == 6 and fields[5].strip("0"):
        words += ", " + str(explain.Minute(fields[5])).replace("minute", "second")
    return words


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def _transition(tz: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The instant in ``(low, high]`` at which the offset changes, given that it differs at the
    two ends and that they lie within ``_NEAR`` (one change between them): bisected to the
    second, as tzdata's changes fall on whole seconds."""
    before = low.astimezone(tz).utcoffset()
    lo, hi = math.floor(low.timestamp()), math.ceil(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _reached(naive: datetime, tz: ZoneInfo) -> datetime:
    """The first instant at which the wall clock shows ``naive`` or later: the instant it names,
    the first of two (fall back), or the jump over it (spring forward)."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)  # the offset before a change
    if _exists(naive, tz):
        return first
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)  # the offset after it
    return _transition(tz, min(first, second), max(first, second))


@dataclass(frozen=True)
class CronSchedule:
    expr: str
    timezone: str = "UTC"
    _compiled: _Compiled = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expr", validate_cron(self.expr))
        object.__setattr__(self, "_compiled", _compile(self.expr))
        zone(self.timezone)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def _first_match(self, after: datetime) -> datetime:
        """The first wall-clock match strictly after ``after`` (naive local time)."""
        match = next(_wall_times(self._compiled.variants, after), None)
        if match is None:
            raise CronError(f"cron expression {self.expr!r} has no fire after {after.isoformat()} ({self.timezone})")
        return match

    def next_after(self, after: datetime) -> datetime:
        """The first fire strictly after ``after`` (aware; naive means UTC), in UTC;
        :class:`CronError` when there is none before the calendar ends (the year 9999)."""
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        after = after.astimezone(UTC)
        try:
            return self._next_in_real_time(after) if self._compiled.wildcard else self._next_fixed(after)
        except (OverflowError, ValueError) as exc:  # datetime's "year 10000 is out of range"
            if isinstance(exc, ValueError) and "out of range" not in str(exc):
                raise
            raise CronError(
                f"cron expression {self.expr!r} has no fire after {after.isoformat()} "
                "(the calendar ends in the year 9999)"
            ) from None

    def _next_fixed(self, after: datetime) -> datetime:
        """A fixed-time job fires where the wall clock first shows a match or a later time
        (``_reached``), so matches fire in their order, and the next fire is that of the first
        match later than any time the clock has shown by ``after``: its time at ``after``, or,
        in the second pass of a repeated span, the time just before it went back."""
        tz = self.tz
        local = after.astimezone(tz)
        if local.fold:  # the second pass (PEP 495's fold): find when the first one ended
            first_pass = local.replace(fold=0).astimezone(UTC)
            local = (_transition(tz, first_pass, after) - _TICK).astimezone(tz)
        return _reached(self._first_match(local.replace(tzinfo=None)), tz)

    def _next_in_real_time(self, after: datetime) -> datetime:
        """A wildcard job fires at every instant whose wall-clock time matches. While the offset
        holds, the wall clock runs in step with real time, so the first match at or after the
        clock's time at ``start`` is the fire; when the offset changes before it, the walk goes
        on from the change (bisected). Only a match more than a day away is placed by zoneinfo
        instead (the clock will have run a day without changing, see ``_NEAR``)."""
        tz = self.tz
        start = after.replace(microsecond=0) + timedelta(seconds=1)  # fires fall on whole seconds
        while True:
            local = start.astimezone(tz)
            wall = local.replace(tzinfo=None)
            match = self._first_match(wall - _TICK)  # at or after ``wall``
            fire = start + (match - wall)  # where the match is if the offset holds
            horizon = min(fire, start + _NEAR)
            if horizon.astimezone(tz).utcoffset() != local.utcoffset():
                start = _transition(tz, start, horizon)  # the first match is beyond it, if at all
            elif fire == horizon:
                return fire
            elif _exists(match, tz):
                # More than a day away, no change within a day of ``start``: the clock shows no
                # time before ``wall`` again, so the match is the fire, at its first showing.
                return _reached(match, tz)
            else:
                start = _reached(match, tz)  # skipped by a jump: go on from the jump

    def fires(self, after: datetime, until: datetime, *, limit: int | None = None) -> Iterator[datetime]:
        """Fires in ``(after, until]``, ascending, at most ``limit`` of them."""
        end = until.astimezone(UTC) if until.tzinfo else until.replace(tzinfo=UTC)
        count = 0
        current = after
        while limit is None or count < limit:
            nxt = self.next_after(current)
            if nxt > end:
                return
            yield nxt
            count += 1
            current = nxt

    def next_n(self, after: datetime, n: int) -> list[datetime]:
        out: list[datetime] = []
        current = after
        for _ in range(max(0, n)):
            current = self.next_after(current)
            out.append(current)
        return out
