"""The errors stbench raises on purpose.

Each one carries a message that names the thing that is wrong and what was
expected, in the spirit of OGB's ``Evaluator``: the reader should be able to fix
the input from the message alone.
"""


class StbenchError(Exception):
    """Base class: every deliberate stbench error derives from it."""


class UnknownNameError(StbenchError, KeyError):
    """A task, split, method or dataset name that is not registered."""

    def __init__(self, kind: str, name: str, known):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; registered {kind}s are: {', '.join(self.known)}")

    def __str__(self):  # KeyError would otherwise print the repr of the message
        return self.args[0]


class DatasetError(StbenchError, ValueError):
    """A dataset that does not follow the AnnData conventions of SPEC §2.1."""


class DataNotFoundError(StbenchError, FileNotFoundError):
    """A registered dataset file that is not in the data directory."""


class ChecksumError(StbenchError, ValueError):
    """A dataset file whose sha256 is not the registered one."""


class ContractError(StbenchError, ValueError):
    """A method output that does not satisfy its task's output contract."""


class MethodNotApplicable(StbenchError):
    """Raised by an adapter (or the runner) when a method cannot serve an input.

    The cell is recorded as ``skipped`` with this message as the reason.
    """

__all__ = ["StbenchError", "UnknownNameError", "DatasetError", "DataNotFoundError", "ChecksumError", "ContractError",
           "MethodNotApplicable"]
