"""Clipboard collector against a real X clipboard: Xvfb, another process (xclip) copying, the
collector in its own Qt (xcb) process, enforcement called from a non-GUI thread as the pipeline does.

Run as a script, this file is that agent-side process (see `child_main`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CARD = "4111 1111 1111 1111"
TEXT = f"Customer paid with {CARD} yesterday, call back."
TIMEOUT = 15.0


def child_main() -> None:
    """The agent side: a QGuiApplication with the collector; events to stdout, commands from stdin."""
    from PySide6.QtCore import QMetaObject, Qt
    from PySide6.QtGui import QGuiApplication

    from collectors.base import Decision, Observation
    from collectors.clipboard import ClipboardCollector
    from policy_client.schema import ClipboardControl, Controls, PolicyDocument, Severity

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    app = QGuiApplication([])
    lock = threading.Lock()

    def send(obj: dict[str, Any]) -> None:
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    class StdoutSink:
        def emit(self, observation: Observation) -> None:
            send({"event": observation.draft.model_dump(mode="json"), "target": observation.target})

    collector = ClipboardCollector(hash_key=b"k" * 32)
    policy = PolicyDocument(version=1, controls=Controls(clipboard=ClipboardControl(mode="mask")))
    collector.start(StdoutSink(), policy)

    def pipeline() -> None:
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["op"] == "enforce":
                decision = Decision(action=cmd["action"], rule_id="clipboard", policy_version=1, severity=Severity.high)
                outcome = collector.enforce(cmd["target"], decision)
                send({"outcome": outcome.action.value, "data": outcome.data})
            elif cmd["op"] == "quit":
                break
        QMetaObject.invokeMethod(app, "quit", Qt.ConnectionType.QueuedConnection)

    threading.Thread(target=pipeline, name="pipeline", daemon=True).start()
    send({"ready": True})
    app.exec()
    collector.stop()


class Agent:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.raw.append(line)
            self.lines.put(json.loads(line))

    def next(self, key: str) -> dict[str, Any]:
        while True:
            item = self.lines.get(timeout=TIMEOUT)
            if key in item:
                return item

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def close(self) -> str:
        """Stop the agent; return its log (stderr)."""
        with contextlib.suppress(OSError):
            self.send({"op": "quit"})
        try:
            _, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 clipboard test runs on Linux"),
    pytest.mark.skipif(shutil.which("xclip") is None or shutil.which("Xvfb") is None, reason="needs Xvfb and xclip"),
]


@pytest.fixture
def x_env() -> Iterator[dict[str, str]]:
    from tests.xvfb import qt_xcb_env, xvfb_display

    # One Xvfb per test: the X clipboard is shared state, tests must not see each other's copies.
    with xvfb_display() as display:
        env = qt_xcb_env(display)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        yield env


def xclip_copy(text: str, env: dict[str, str]) -> None:
    # xclip forks a child that owns the selection until someone else takes it.
    subprocess.run(["xclip", "-selection", "clipboard"], input=text, text=True, env=env, check=True, timeout=10)


def xclip_paste(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["xclip", "-o", "-selection", "clipboard"], capture_output=True, text=True, env=env, timeout=10, check=False
    )


def test_copied_card_is_reported_masked_and_mask_mode_rewrites_the_clipboard(x_env: dict[str, str]) -> None:
    from collectors.pii import mask_text, scan_text

    agent = Agent(x_env)
    try:
        agent.next("ready")
        xclip_copy(TEXT, x_env)
        item = agent.next("event")
        event = item["event"]
        assert event["kind"] == "clipboard.sensitive"
        assert event["data"]["findings"][0]["type"] == "card"
        assert event["data"]["findings"][0]["sample"] == "XXXX XXXX XXXX 1111"
        assert event["data"]["length"] == len(TEXT)
        assert event["data"]["format"] == "text/plain"

        agent.send({"op": "enforce", "action": "mask", "target": item["target"]})
        outcome = agent.next("outcome")
        assert outcome["outcome"] == "masked", outcome
        pasted = xclip_paste(x_env)
        assert pasted.stdout == mask_text(TEXT, scan_text(TEXT))
        assert "XXXX XXXX XXXX 1111" in pasted.stdout
    finally:
        log = agent.close()
    everything = "".join(agent.raw) + log
    assert CARD not in everything
    assert CARD.replace(" ", "") not in everything
    assert sum('"event"' in line for line in agent.raw) == 1


def test_low_confidence_numbers_are_left_as_copied_and_not_counted(x_env: dict[str, str]) -> None:
    """Default policy (min_confidence medium): an order id that passes Luhn is neither counted nor masked, the card
    beside it is, and a copy holding only such ids raises nothing."""
    order = "4111111111111111"
    card = "5500 0000 0000 0004"
    mixed = f"Order no.: {order} shipped; customer card {card} exp 12/27"
    agent = Agent(x_env)
    try:
        agent.next("ready")
        xclip_copy(f"Order no.: {order} shipped", x_env)
        xclip_copy(mixed, x_env)
        item = agent.next("event")
        data = item["event"]["data"]
        assert data["length"] == len(mixed)  # the order-only copy raised nothing
        assert [(f["type"], f["count"], f["confidence"]) for f in data["findings"]] == [("card", 1, "high")]
        assert data["below_min_confidence"] == 1
        agent.send({"op": "enforce", "action": "mask", "target": item["target"]})
        assert agent.next("outcome")["outcome"] == "masked"
        assert xclip_paste(x_env).stdout == mixed.replace(card, "XXXX XXXX XXXX 0004")
    finally:
        log = agent.close()
    assert sum('"event"' in line for line in agent.raw) == 1
    assert card not in "".join(agent.raw) + log


def test_clear_mode_empties_the_clipboard_and_harmless_text_is_not_reported(x_env: dict[str, str]) -> None:
    agent = Agent(x_env)
    try:
        agent.next("ready")
        xclip_copy("nothing sensitive here, order 12345", x_env)
        xclip_copy(TEXT, x_env)
        item = agent.next("event")
        assert item["event"]["data"]["length"] == len(TEXT)  # the harmless copy raised nothing
        agent.send({"op": "enforce", "action": "clear", "target": item["target"]})
        outcome = agent.next("outcome")
        assert outcome["outcome"] == "cleared", outcome
        assert xclip_paste(x_env).stdout == ""
    finally:
        agent.close()


if __name__ == "__main__":
    child_main()
