"""File formats that both sides of the hourglass share (docs/architecture.md, layer "formats"):
a layout the write side writes or replays and the read side reads lives here, once, below
both, so neither side imports the other: the production trace layouts (``azure_trace``,
``mooncake_trace``, ``burstgpt_trace``), the
OTLP/JSON span file and vLLM's request-span names (``otlp``), a cell's GPU energy file
(``energy``)."""
