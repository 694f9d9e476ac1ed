"""The vendored upstream files are read by ../test_cronsim_conformance.py, not collected."""

collect_ignore_glob = ["test_*.py"]
