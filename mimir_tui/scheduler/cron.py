"""Cron schedules in an IANA timezone, with Debian cron's DST behaviour.

Expressions have 5 fields, or 6 with seconds (croniter's convention: seconds last); the
``@hourly``-style nicknames are accepted. croniter walks the *local wall clock* (naive times);
this module maps each wall-clock match to real instants:

- A job at a fixed hour runs once per local day on both DST transition days: a wall-clock time
  that occurs twice (fall back) fires at its first occurrence only; a time skipped by spring
  forward fires right after the jump (several skipped times of one job fire once).
- A job whose hour field is ``*`` or a step runs once per real hour: a repeated hour fires
  twice (it is two real hours), a skipped hour not at all (it never happened).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from ..errors import BadInput

_NICKNAMES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
# DST shifts are at most 2 hours (historic double summer time); candidates are gathered over
# this much wall-clock time beyond the first one so that out-of-order folds are not missed.
_FOLD_WINDOW = timedelta(hours=3)


class CronError(BadInput):
    """A cron expression or timezone that cannot be used; the message names it."""


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)") from None


def validate_cron(expr: str) -> str:
    """The expression, normalised (single spaces); :class:`CronError` names what is wrong."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError("cron expression is empty")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in _NICKNAMES:
            raise CronError(f"cron expression {expr!r}: unknown nickname (use one of {', '.join(sorted(_NICKNAMES))})")
        return text.lower()
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise CronError(
            f"cron expression {expr!r} has {len(fields)} fields; use 5 (minute hour day month weekday) "
            f"or 6 (with seconds last)"
        )
    try:
        croniter(text, datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).replace(f"[{text}] ", "")
        raise CronError(f"cron expression {expr!r}: {reason}") from None
    try:
        # A date that never comes (0 0 30 2 *): croniter parses it, then never finds a fire.
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        raise CronError(f"cron expression {expr!r} never fires (no such date)") from None
    return text


def _per_real_hour(expr: str) -> bool:
    """True when the hour field is ``*`` or a step: such a job runs once per real hour."""
    if expr.startswith("@"):
        return expr == "@hourly"
    hour = expr.split(" ")[1]
    return "*" in hour or "/" in hour


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def _is_ambiguous(naive: datetime, tz: ZoneInfo) -> bool:
    return naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()


def _after_gap(naive: datetime, tz: ZoneInfo) -> datetime:
    """The first real instant after the wall-clock gap ``naive`` falls in (the jump itself)."""
    before = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)  # read with the pre-jump offset
    after = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)  # read with the post-jump offset
    lo, hi = min(before, after), max(before, after)
    offset_lo = lo.astimezone(tz).utcoffset()
    # The offset changes exactly once in (lo, hi]; find that instant to the second.
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == offset_lo:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0)


@dataclass(frozen=True)
class CronSchedule:
    expr: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "expr", validate_cron(self.expr))
        zone(self.timezone)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def _instants(self, naive: datetime) -> list[datetime]:
        """The real instants (UTC) at which one wall-clock match fires."""
        tz = self.tz
        if not _exists(naive, tz):
            return [] if _per_real_hour(self.expr) else [_after_gap(naive, tz)]
        if _is_ambiguous(naive, tz):
            first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
            if _per_real_hour(self.expr):
                return [first, naive.replace(tzinfo=tz, fold=1).astimezone(UTC)]
            return [first]
        return [naive.replace(tzinfo=tz).astimezone(UTC)]

    def next_after(self, after: datetime) -> datetime:
        """The first fire strictly after ``after`` (aware; naive means UTC), in UTC."""
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        after = after.astimezone(UTC)
        tz = self.tz
        local = after.astimezone(tz)
        # Fast path: no offset change between ``after`` and the next wall-clock match, so wall
        # clock and real time run in step and the first match is the first fire.
        naive = croniter(self.expr, local.replace(tzinfo=None)).get_next(datetime)
        if _exists(naive, tz) and not _is_ambiguous(naive, tz):
            candidate = naive.replace(tzinfo=tz)
            if candidate.utcoffset() == local.utcoffset():
                instant = candidate.astimezone(UTC)
                if instant > after:
                    return instant
        # Near a DST change: start a little before, in wall-clock time, so that a fold's
        # second pass is seen, and take the earliest real instant.
        start = after.astimezone(tz).replace(tzinfo=None) - _FOLD_WINDOW
        it = croniter(self.expr, start)
        best: datetime | None = None
        limit: datetime | None = None
        while True:
            naive = it.get_next(datetime)
            if limit is not None and naive > limit:
                break
            for instant in self._instants(naive):
                if instant > after and (best is None or instant < best):
                    best = instant
                    limit = naive + _FOLD_WINDOW
        assert best is not None
        return best

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
