"""Positive controls: the one place where truth is given on purpose (``uses_truth``).

They fix the 1 of the scaled scores and check that each metric can reach its
best value. The runner hands ``ctx.solution`` only to methods marked
``uses_truth``, and what it hands over is the task's reference output
(``Task.reference_output``): the task knows its solution's layout, the control
does not need to.
"""

from stbench.methods import Method
from stbench.tasks import TASKS

positive_control = Method(
    name="positive_control", kind="control", label="Positive control", uses_truth=True,
    summary="Returns the truth: held-out or clean expression, true labels, a one-hot label embedding, "
    "the true placement with a same-label matching plan.",
)


@positive_control.solves(*TASKS)
def reference_answer(inputs, ctx):
    """The task's own reference output (``Task.reference_output``), handed over as ``ctx.solution``."""
    return ctx.solution
