"""Governance reports: the figures per team and period, their CSV export and inline SVG charts.

Computed on console request worker threads from the store.
"""
