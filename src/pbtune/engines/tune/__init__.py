"""The Ray Tune engine (``engine: tune``): pbtune workloads and configs through ``tune.Tuner``."""
