"""The offline core: logged data and labels, off-policy estimators, drift reference data.

Shared by ``training`` and ``eval``, which both build on it; it sits over ``features`` and
``router_model`` and imports neither ``training`` nor ``eval``.
"""
