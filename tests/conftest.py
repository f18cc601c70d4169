"""Shared test settings: small thread counts, offline wandb, no network."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
