"""Misfire policy, as pure functions of plain values: which of a job's due fires run, and
which are recorded ``missed``. No database and no clock: the tick passes ``now``.

A fire later than the job's ``misfire_grace_seconds`` is a misfire. The policy says what runs:
``skip`` runs only the fires on time; ``once`` the latest fire alone (late or not); ``all``
every fire, up to the latest ``misfire_cap`` of them. Every fire not run is recorded
``missed``, so that a downtime shows in the history.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..persistence.models import MisfirePolicy
from .cron import CronSchedule

#: Missed fires recorded one by one per job and tick (the latest ones); older fires of a longer
#: downtime are summed up in the note of the oldest recorded one.
MAX_MISSED_ROWS = 1000


@dataclass(frozen=True)
class DueFires:
    """The fires of one job due at a tick."""

    #: Oldest first: all of them, or after a long downtime the latest
    #: ``MAX_MISSED_ROWS + misfire_cap``.
    fires: list[datetime]
    #: The first fire left out of ``fires`` (every fire from it until ``fires[0]`` was
    #: missed); None when none was.
    unlisted_from: datetime | None
    #: The first fire after ``now`` when the walk came across it (else the caller computes it).
    following: datetime | None


@dataclass(frozen=True)
class MisfireChoice:
    run: list[datetime]
    missed: list[datetime]


def due_fires(schedule: CronSchedule, next_fire: datetime, now: datetime, misfire_cap: int) -> DueFires:
    """The fires of ``schedule`` from ``next_fire`` up to ``now``, at most
    ``MAX_MISSED_ROWS + misfire_cap`` of them (see :class:`DueFires`)."""
    keep = MAX_MISSED_ROWS + max(1, misfire_cap)
    fires = [next_fire]
    following = schedule.next_after(next_fire)
    while following <= now and len(fires) <= keep:
        fires.append(following)
        following = schedule.next_after(following)
    if len(fires) <= keep:
        # The walk stopped at the first fire after ``now``: the job's next fire (computing
        # it again costs a croniter per job and tick, 1,000 of them when 1,000 jobs are due).
        return DueFires(fires, None, following)
    # Too many: find the latest ``keep`` fires by walking forward from a point before
    # ``now`` that holds about as many (a window doubled until it does).
    span = max(fires[-1] - fires[0], timedelta(seconds=1))
    while True:
        start = now - span
        if start <= fires[-1]:
            latest = deque(fires, maxlen=keep)
            latest.extend(schedule.fires(fires[-1], now))
            break
        latest = deque(schedule.fires(start, now), maxlen=keep)
        if len(latest) >= keep:
            break
        span *= 2
    return DueFires(list(latest), fires[0], None)


def choose_fires(fires: list[datetime], now: datetime, *, policy: str, grace_seconds: float, cap: int) -> MisfireChoice:
    """Which of the due ``fires`` (oldest first) run and which are missed, under the job's
    misfire ``policy`` (an unknown one counts as ``skip``), ``misfire_grace_seconds`` and
    ``misfire_cap``."""
    grace = timedelta(seconds=grace_seconds)
    on_time = [f for f in fires if now - f <= grace]
    if len(on_time) == len(fires):
        run = on_time
    elif policy == MisfirePolicy.all:
        run = fires[-max(1, cap) :]
    elif policy == MisfirePolicy.once:
        run = fires[-1:]
    else:
        run = on_time
    chosen = set(run)
    return MisfireChoice(run, [f for f in fires if f not in chosen])


def missed_note(fire: datetime, now: datetime, policy: str, unlisted_from: datetime | None = None) -> str:
    """The error text of a fire recorded missed by its misfire policy; ``unlisted_from``: the
    earlier fires summed up in this one's note (see :class:`DueFires`)."""
    late = int((now - fire).total_seconds())
    note = f"missed: fire at {fire.isoformat()} was {late} s late (misfire policy {policy})"
    if unlisted_from is not None:
        note += f"; every earlier fire since {unlisted_from.isoformat()} was missed too (not recorded one by one)"
    return note


def overlap_note(active: int, max_concurrent: int) -> str:
    """The error text of a fire recorded missed because the job had no free slot."""
    return f"missed: {active} run(s) of this job still active (max_concurrent {max_concurrent})"
