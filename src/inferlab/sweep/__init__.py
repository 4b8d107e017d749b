"""The orchestrator: it sits above ``targets``, ``load``, ``probe``, ``telemetry`` and ``runs``
and drives them for a sweep or stress run (``runner``)."""
