"""The tray's dialogs: acknowledgement, clean desk, violation notices, exception request, transparency, about, unlock.

All run on the GUI thread, open with show()/open(), and report answers through Qt signals.
"""
