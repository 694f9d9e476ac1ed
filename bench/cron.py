#!/usr/bin/env python3
"""What computing a job's next fire costs near a DST change, against an ordinary instant.

    python bench/cron.py               # 1,000 instants per place, best of 3 rounds (~10 s)
    python bench/cron.py --points 20   # fewer instants (for a slow version of cron.py)

``CronSchedule.next_after`` (what the scheduler calls after each fire, and for a job it has
just loaded) from instants spread evenly over three stretches of two real hours in
America/New_York, 2026:

* ordinary: a Wednesday, 00:30 to 02:30, far from any change;
* the fall-back (1 November, 02:00 EDT -> 01:00 EST): both passes of the repeated hour, 01:00
  to 02:00 EDT then 01:00 to 02:00 EST, where a per-second job used to cost 1.3 s a fire;
* the spring-forward (8 March, 02:00 EST -> 03:00 EDT): the hour before the jump and the hour
  after it.

For a per-second and a per-minute wildcard job (real time: both passes fire) and a per-second
fixed-time one (the first pass fires, the second does not). Per fire: the mean over the
instants, the best of the rounds. Target: near either change, within 2x the ordinary figure.
Exit status 0 when every target is met.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import common

from mimir_tui.scheduler.cron import CronSchedule

ZONE = "America/New_York"
STRETCHES = {  # name: (start in UTC, what it holds); each two real hours long
    "ordinary": (datetime(2026, 10, 28, 4, 30, tzinfo=UTC), "Wednesday 00:30-02:30 EDT"),
    "fall-back": (datetime(2026, 11, 1, 5, 0, tzinfo=UTC), "01:00-02:00 EDT, then 01:00-02:00 EST"),
    "spring-forward": (datetime(2026, 3, 8, 6, 0, tzinfo=UTC), "01:00-02:00 EST, then 03:00-04:00 EDT"),
}
JOBS = {
    "* * * * * *": "every second, wildcard",
    "* * * * *": "every minute, wildcard",
    "0-59 1 * * * *": "every second of 01:xx, fixed time",
}
TARGET = 2.0


def per_fire(call: Callable[[datetime], object], points: int, rounds: int) -> dict[str, float]:
    """Seconds per call, for each stretch, over ``points`` instants spread over its two hours
    (not on whole seconds); the stretches take turns, round by round, and the best round counts."""
    step = timedelta(hours=2) / points
    best = dict.fromkeys(STRETCHES, float("inf"))
    for _ in range(rounds):
        for name, (start, _) in STRETCHES.items():
            instants = [start + step * k + timedelta(microseconds=250_000) for k in range(points)]
            started = time.perf_counter()
            for instant in instants:
                call(instant)
            best[name] = min(best[name], (time.perf_counter() - started) / points)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1000, help="instants per stretch (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the best counts (default 3)")
    args = parser.parse_args(argv)
    report = common.Report()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    report.say(
        f"Mimir cron benchmark: Python {sys.version.split()[0]}, load average {load:.2f}, "
        f"{args.points} instants per stretch, best of {args.rounds}, {ZONE}"
    )
    started = time.perf_counter()
    for expr, what in JOBS.items():
        report.say(f"\n`{expr}`: {what}")
        figures = per_fire(CronSchedule(expr, ZONE).next_after, args.points, args.rounds)
        for name, (_, holds) in STRETCHES.items():
            report.say(f"  {name} ({holds}): {figures[name] * 1e3:.3f} ms per fire")
        ordinary = figures["ordinary"]
        for name in ("fall-back", "spring-forward"):
            ratio = figures[name] / ordinary
            report.target(
                f"`{expr}` near the {name}: {figures[name] * 1e3:.3f} ms per fire, ordinary "
                f"{ordinary * 1e3:.3f} ms, {ratio:.2f}x",
                ratio,
                TARGET,
                "x",
            )
    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
