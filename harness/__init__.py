"""ltbench's engine: data, models, training, metrics, scheduling, tracking, reports and the CLI.

Data flows one way: CLI -> suite -> trials -> trainer -> tracking -> reports.
"""

__version__ = "0.1.0"
