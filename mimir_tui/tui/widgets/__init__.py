"""Widgets and small modal screens shared by the dashboard's screens."""
