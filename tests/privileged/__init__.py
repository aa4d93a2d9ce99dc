"""Tests that run the agent's helper as a real standard user (useradd, setpriv) and check what the OS refuses it."""
