"""Database operations as use cases that the command line, the service and the dashboard call
alike (retention; backup, restore, vacuum and migrate as they come)."""
