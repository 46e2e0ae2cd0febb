"""Deployment targets: ``dynapse2`` (rules, placement, routing, biases, configuration).

Nothing here imports rockpool or samna at module load: the parts that need them import them when
they are used.
"""
