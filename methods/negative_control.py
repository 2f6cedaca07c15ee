"""Seeded negative controls: outputs of the right shape that carry no signal.

They fix the 0 of the scaled scores, so each one is the thing a method must
beat to be worth anything, and it depends only on the seed and the inputs. Each
task says what its random output is (``Task.random_output``), so the control
solves every registered task without knowing any of them.
"""

from stbench.methods import Method
from stbench.tasks import TASKS, get_task

negative_control = Method(
    name="negative_control", kind="control", label="Negative control",
    summary="Seeded random output of the right shape: random observed spots, "
    "each gene shuffled across spots, random labels or embeddings, the query set down far off the reference.",
)


@negative_control.solves(*TASKS)
def random_output(inputs, ctx):
    return get_task(ctx.task).random_output(inputs, ctx.seed)
