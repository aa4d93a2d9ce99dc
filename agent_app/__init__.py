"""DeskWarden tray agent: enforces device controls on an agent PC and reports to the central endpoint."""

__version__ = "0.1.0"
