"""The models: every family of both deliverables, and what they share.

:mod:`shared.models.families` (one module per family, each exporting ``FAMILY``) are collected
by :mod:`shared.models.registry`; :mod:`shared.models.spec` says what a family declares.
"""
