"""Shared test settings: small thread counts, offline wandb, no network."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")


def pytest_configure(config):
    # the session-wide tiny sweep (tests/sweep_fixtures.py) is shared by the sweep and notebook tests
    config.pluginmanager.import_plugin("sweep_fixtures")
