"""Write the endpoint's OpenAPI description to docs/openapi.json (checked in; a test fails when it is stale).

Run: .venv/bin/python scripts/gen_openapi.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.app import create_app  # noqa: E402
from central.settings import ServerSettings  # noqa: E402

TARGET = ROOT / "docs" / "openapi.json"


def render() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServerSettings(data_dir=Path(tmp)))
        spec = app.openapi()
        app.state.runtime.db.dispose()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}")
