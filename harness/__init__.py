"""ltbench's engine. Data flows one way: CLI -> suite -> plan -> execution -> trainer -> records -> reports
(docs/architecture.md is the map of its folders)."""

__version__ = "0.1.0"
