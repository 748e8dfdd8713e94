"""Fakes that run for real and are not plugins (a TCP proxy that cuts connections). Test plugins
live in ``tests/plugin_fixtures/``."""
