"""Raw files -> tidy pandas DataFrames. Each reader raises IngestError on bad input and
records lines read/used/skipped in ``df.attrs["ingest"]``."""

from .edge_log import read_edge_log
from .errors import IngestError, TruncatedLineWarning
from .k6 import read_k6, read_k6_points, read_k6_tables
from .k6_summary import read_k6_summary
from .nvidia_smi import NvidiaSmiLog, read_nvidia_smi, read_nvidia_smi_gpus, read_nvidia_smi_log
from .probe import Probe, read_probe
from .spans import read_spans
from .prometheus import VLLM_METRICS, counter_delta, histogram_delta, histogram_quantile, read_prometheus_text

__all__ = [
    "IngestError", "TruncatedLineWarning", "read_k6", "read_k6_points", "read_k6_summary", "read_k6_tables",
    "read_nvidia_smi", "read_nvidia_smi_gpus", "read_nvidia_smi_log", "NvidiaSmiLog", "Probe", "read_probe",
    "read_prometheus_text", "VLLM_METRICS",
    "counter_delta", "histogram_delta", "histogram_quantile", "read_edge_log", "read_spans",
]
