"""`ltbench bench`: how fast ltbench is, each figure a ratio against a baseline measured in the same process.

Sections (targets in brackets):
  (a) pipeline      device-resident batches vs a per-sample torchvision DataLoader pipeline  [>= 5x]
  (b) trainer       `train_epoch` vs a bare hand-written PyTorch loop                   [>= 0.95x]
      bf16          bare loop in bf16 autocast vs fp32, where bf16 is usable                 [>= 1.5x]
  (c) stage sharing backbone epochs retraining per method / with shared backbones            [>= 1.9x]
  (d) flops         achieved training FLOP/s vs a large dense matmul on this machine          [reported]
  (e) makespan      cifar-lt on 8 and 64 simulated GPUs: barrier / no barrier, vs the bound    [reported]
  (f) grouping      K trials per process (eager, and captured on a GPU) vs one trial          [reported]
  (g) load          N simulated trials through `ltbench run`'s driver, Tune and MLflow (`--load`) [reported]

`run.py` runs sections (a)-(f) and writes their result to `<results>/bench.json` with the machine it ran on;
`format_table` prints it. Each section is a module of its own. Timing ratios, never absolute timings, are the
figures: they are what carries over between runs of one machine; (g) alone measures the driver itself, in
absolute figures of this machine (`load.py`). This `__init__` imports nothing, so that a Ray worker that
unpickles a simulated trial (`simulated_trial.py`) imports neither torch nor the other sections.
"""
