"""What every runtime builds from a config, below them all: objects, round rules, checkpoints.

The simulator, the deployment and fidelity call these, so a config means the same
dataset, model, fleet, trainer and strategy wherever it runs.
"""
