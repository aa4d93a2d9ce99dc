"""Local IPC between the privileged service and the per-session tray helpers (ARCHITECTURE.md section 6)."""
