"""`biasamp demo`: simulate, measure and report a study in under a minute, offline, on CPU."""

from biasamp.demo.run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
