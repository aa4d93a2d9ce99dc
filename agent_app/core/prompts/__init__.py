"""Pure prompt logic for the tray (no widgets): when to ask, what counts as an answer, which event to record.

Called on the GUI thread by agent_app.ui; every class takes an injectable clock so tests need no sleeps.
"""
