"""Mimir: data and AI pipelines on cron schedules, with everything they do kept."""

__version__ = "0.1.0"
