"""Fixtures of the CLI tests."""
from fake_plugins import plugins  # noqa: F401 - a fixture: fake entry-point plugins
