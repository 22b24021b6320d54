"""Command-line argument types shared by ``vidloader.cli`` and the prepare commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

STORAGE_OPTIONS_HELP = 'object store options for URLs (JSON object), e.g. \'{"client_kwargs": {"endpoint_url": "http://..."}}\''


def storage_options_arg(text: str) -> dict[str, Any]:
    """``--storage-options``: a JSON object (the object store's options)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value
