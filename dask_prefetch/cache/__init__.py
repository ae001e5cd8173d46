"""Local storage tiers: byte budgets in priority order, private scratch directories, and the sweep of dead ones.

* :mod:`.tiers` — :class:`~.tiers.TierSet` (reservations against each tier's budget),
  :class:`~.tiers.ScratchDirectory` and :func:`~.tiers.sweep_storage`.
"""
