"""A grade: what ran, each check's verdict, the score, and what the learner reads (feedback)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inferlab.bench.records import write_atomically


@dataclass
class GradeReport:
    notebook: str
    lab: str | None
    status: str            # completed, completed with errors, timeout, crash, unreadable, wrong lab, unchanged
    message: str
    seconds: float
    checks: list[dict] = field(default_factory=list)    # name, passed, detail, hint
    score: int = 0
    total: int = 0
    learner: str = ""
    flags: list[str] = field(default_factory=list)      # attempts to forge or bypass a check
    restored: list[str] = field(default_factory=list)   # source cells the submission edited or deleted
    missing: list[str] = field(default_factory=list)    # exercises not found: their stub ran
    added_cells: int = 0
    sha256: str = ""
    source_sha256: str = ""

    def line(self) -> str:
        """One line: who, which lab, the score or why there is none."""
        who = f"{self.learner}: " if self.learner else ""
        what = f"{self.score}/{self.total}" if self.total else "-"
        flag = f", {len(self.flags)} flagged" if self.flags else ""
        return (f"{who}{self.lab or Path(self.notebook).name} {what} ({self.status}{flag})"
                + (f": {self.message}" if self.message else ""))

    def table(self) -> str:
        rows = [f"Grade report for {self.notebook} (lab {self.lab or 'unknown'})",
                f"run: {self.status} in {self.seconds:.0f} s" + (f" ({self.message})" if self.message else "")]
        rows += [f"restored from the lab: {r}" for r in self.restored]
        rows += [f"not found, the stub ran: {m}" for m in self.missing]
        rows += [f"FLAGGED: {f}" for f in self.flags]
        width = max([len(c["name"]) for c in self.checks] + [5])
        rows.append(f"{'check'.ljust(width)}  result  detail")
        for c in self.checks:
            rows.append(f"{c['name'].ljust(width)}  {'PASS' if c['passed'] else 'FAIL'}    {c['detail']}")
        rows.append(f"score: {self.score}/{self.total}")
        return "\n".join(rows)

    def feedback(self) -> str:
        """Markdown for the learner: each check's verdict, and the hint where it failed."""
        out = [f"# {self.lab or Path(self.notebook).name}: {self.score}/{self.total}", "",
               f"Notebook `{Path(self.notebook).name}`, graded: {self.status}"
               + (f" ({self.message})" if self.message else "") + f", {self.seconds:.0f} s.", ""]
        if self.checks:
            out += ["| check | result | verdict |", "|---|---|---|"]
            for c in self.checks:
                verdict = c["detail"] + (f" *Hint: {c['hint']}*" if not c["passed"] and c.get("hint") else "")
                out.append(f"| `{c['name']}` | {'pass' if c['passed'] else '**fail**'} | {_cell(verdict)} |")
            out.append("")
        notes = ([f"- The lab's own cell was used instead of yours ({r})." for r in self.restored]
                 + [f"- No answer found for `{m}`: the unfinished exercise ran." for m in self.missing]
                 + [f"- Flagged: {f}" for f in self.flags])
        if self.added_cells:
            notes.append(f"- {self.added_cells} cell(s) you added ran with your answers.")
        return "\n".join(out + (["## Notes", ""] + notes + [""] if notes else []))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_json(report: GradeReport, path: Path) -> None:
    """Write ``report`` whole or not at all (an interrupted class run never leaves half a file)."""
    write_atomically(path, json.dumps(asdict(report), indent=2) + "\n")


def read_json(path: Path) -> GradeReport:
    return GradeReport(**json.loads(path.read_text(encoding="utf-8")))
