"""docs/openapi.json is what the app describes now (regenerate with scripts/gen_openapi.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def test_checked_in_openapi_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = module.render()
    checked_in = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert json.loads(checked_in) == json.loads(current), "docs/openapi.json is stale: run scripts/gen_openapi.py"
    assert "/v1/alerts/stream" in json.loads(current)["paths"]
