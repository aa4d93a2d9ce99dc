"""A second endpoint process for the cross-process alert test: `python serve_child.py DATA_DIR DB_URL PORT`."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from central.app import create_app
from central.settings import ServerSettings

if __name__ == "__main__":
    data_dir, db_url, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    app = create_app(ServerSettings(data_dir=data_dir, db_url=db_url), alert_poll_s=0.1)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
