"""Built-in screen-capture tool names per OS and the matcher that adds the policy's names and paths.

Pure values; built on the main thread when policy changes, used on the scanner thread.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from policy_client.schema import ScreenCaptureControl

DEFAULT_TOOLS: dict[str, tuple[str, ...]] = {
    "win32": (
        "SnippingTool.exe",
        "ScreenClippingHost.exe",
        "ScreenSketch.exe",
        "ShareX.exe",
        "Greenshot.exe",
        "Lightshot.exe",
        "obs64.exe",
        "obs32.exe",
        "Snagit32.exe",
        "SnagitCapture.exe",
        "PicPick.exe",
        "Monosnap.exe",
    ),
    "linux": (
        "flameshot",
        "spectacle",
        "gnome-screenshot",
        "ksnip",
        "scrot",
        "obs",
        "shutter",
        "maim",
        "grim",
        "kazam",
        "simplescreenrecorder",
        "peek",
        "xfce4-screenshooter",
    ),
    "darwin": ("screencapture", "Screenshot", "OBS", "obs", "Snagit 2024", "Monosnap", "CleanShot X", "Skitch"),
}


def default_tool_names(platform: str = sys.platform) -> tuple[str, ...]:
    key = "linux" if platform.startswith("linux") else platform
    return DEFAULT_TOOLS.get(key, DEFAULT_TOOLS["linux"])


def _norm_path(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.expanduser(path)))


@dataclass(frozen=True, slots=True)
class ToolMatcher:
    """Case-insensitive process names plus exact executable paths."""

    names: frozenset[str]
    paths: frozenset[str]

    @classmethod
    def for_policy(cls, control: ScreenCaptureControl, *, platform: str = sys.platform) -> ToolMatcher:
        names = {name.casefold() for name in (*default_tool_names(platform), *control.process_names) if name}
        return cls(names=frozenset(names), paths=frozenset(_norm_path(p) for p in control.executable_paths if p))

    def matches(self, name: str, exe: str) -> bool:
        if name and name.casefold() in self.names:
            return True
        if exe:
            # Split on both separators so Windows paths match on any OS (and in tests).
            if exe.replace("\\", "/").rsplit("/", 1)[-1].casefold() in self.names:
                return True
            if self.paths and _norm_path(exe) in self.paths:
                return True
        return False
