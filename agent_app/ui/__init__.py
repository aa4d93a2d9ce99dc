"""Qt widgets of the tray agent; no I/O and no policy logic. Runs on the GUI thread only."""
