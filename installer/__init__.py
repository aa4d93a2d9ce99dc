"""Build-time packaging for the DeskWarden agent (PyInstaller spec, bundle settings, autostart templates).

Never imported by the agent at run time; `python -m installer.build` runs on a build machine's main thread.
"""
