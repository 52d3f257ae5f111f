"""The grader's guard, inside the kernel that runs a submission.

The grader puts one cell before everything else: ``import inferlab.grading.kernel as g; g.install()``.
``install`` reads the run's secret key, the lab's check modules and the notebook names of each
check's answers from a file the grader wrote, deletes that file, imports those modules (so that what
they define is recorded before any learner code runs), opens the verdict file, and from then on every check's verdict goes there as a JSON line signed with the
key, with:

- ``cell``: a digest of the cell that was running, so the grader counts only the verdicts its own
  check cells produced, not a check a learner's cell called on something else;
- ``tampered``: what looks wrong at that moment: a function or class of ``inferlab`` that is no
  longer the one imported (a check replaced by assignment), or a check called on an object that is
  not the notebook's answer of that name.

A line the learner's code writes itself has no valid signature. This stops casual cheating, not
code that sets out to read the key out of this process's memory (see the README's threat model).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import types

KEY_FILE_ENV = "INFERLAB_GRADE_KEY_FILE"
VERDICTS_ENV = "INFERLAB_GRADE_VERDICTS"
INSTALL_CELL = "import inferlab.grading.kernel as _inferlab_guard\n_inferlab_guard.install()\ndel _inferlab_guard"
AUDIT_CELL = "import inferlab.grading.kernel as _inferlab_guard\n_inferlab_guard.audit()\ndel _inferlab_guard"
AUDIT = "__audit__"
_guard: "Guard | None" = None


def cell_digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def sign(key: bytes, record: dict) -> str:
    body = json.dumps(record, sort_keys=True)
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def _definitions(module) -> dict[str, object]:
    """The functions and classes a module defines or imports, by name."""
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, (types.FunctionType, type)) or getattr(obj, "is_graded_check", False)}


def _inferlab_modules() -> dict[str, types.ModuleType]:
    return {name: mod for name, mod in list(sys.modules.items())
            if (name == "inferlab" or name.startswith("inferlab.")) and mod is not None}


class Guard:
    def __init__(self, key: bytes, out, answers: dict[str, tuple[str, ...]]):
        self.key, self.out, self.answers = key, out, answers
        self.cell = ""
        self.snapshot = {name: _definitions(mod) for name, mod in _inferlab_modules().items()}

    def before_cell(self, info) -> None:
        self.cell = cell_digest(getattr(info, "raw_cell", "") or "")

    def replaced(self) -> list[str]:
        found = []
        for name, module in _inferlab_modules().items():
            before = self.snapshot.setdefault(name, _definitions(module))   # imported since: its own baseline
            now = vars(module)
            found += [f"{name}.{attr} was replaced" for attr, obj in before.items() if now.get(attr) is not obj]
        return found

    def wrong_arguments(self, check: str, args: tuple) -> list[str]:
        from IPython import get_ipython
        shell = get_ipython()
        user = shell.user_ns if shell is not None else {}
        return [f"{check} was called on something other than the notebook's `{name}`"
                for name, arg in zip(self.answers.get(check, ()), args)
                if name in user and user[name] is not arg]

    def __call__(self, verdict, args: tuple, kwargs: dict) -> None:
        self.write(verdict.name, verdict.passed, verdict.detail, verdict.hint,
                   self.replaced() + self.wrong_arguments(verdict.name, args))

    def write(self, name: str, passed: bool, detail: str, hint: str, tampered: list[str]) -> None:
        record = {"name": name, "passed": passed, "detail": detail, "hint": hint, "cell": self.cell,
                  "tampered": tampered}
        record["sig"] = sign(self.key, record)
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()


def install() -> None:
    """Start guarding this kernel (the grader's first cell calls it; a second call does nothing)."""
    key_file, verdicts = os.environ.pop(KEY_FILE_ENV, None), os.environ.pop(VERDICTS_ENV, None)
    if not key_file or not verdicts:
        return
    with open(key_file, encoding="utf-8") as fh:
        config = json.load(fh)
    os.unlink(key_file)
    import importlib

    from IPython import get_ipython

    import inferlab.checks as checks
    for module in config["modules"]:
        importlib.import_module(module)
    answers = {check: tuple(names) for check, names in config["answers"].items()}
    guard = Guard(bytes.fromhex(config["key"]), open(verdicts, "a", encoding="utf-8"), answers)
    checks.add_sink(guard)
    global _guard
    _guard = guard
    shell = get_ipython()
    if shell is not None:
        shell.events.register("pre_run_cell", guard.before_cell)


def audit() -> None:
    """The grader's last cell: report anything of ``inferlab`` replaced since the start."""
    if _guard is not None:
        _guard.write(AUDIT, True, "", "", _guard.replaced())
