"""LaTeX text for tables a paper can `\\input`: escaping and a booktabs tabular. No torch.

The output needs only the `booktabs` package; it compiles in a minimal `article` document.
"""
from __future__ import annotations

from typing import Sequence

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "\u2013": "--", "\u2014": "---", "\u00b1": r"$\pm$", "\u03b1": r"$\alpha$",
}


def escape(text: str) -> str:
    """`text` as LaTeX text: the characters LaTeX reads as commands (& % $ # _ { } ~ ^ \\ < > |)
    escaped, the en and em dash, the plus-minus sign and alpha as LaTeX writes them; line
    breaks become spaces (a cell or caption is one line)."""
    return "".join(_SPECIAL.get(c, c) for c in " ".join(str(text).splitlines()))


def booktabs_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str,
                   caption: str | None = None, label: str | None = None) -> str:
    """A `table` float holding a booktabs `tabular` (toprule, midrule, bottomrule).

    Cells, header and caption are LaTeX already (pass text through `escape`); `align` has one
    letter per column (`l`, `c`, `r`). A row of another width is a ValueError."""
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row needs {len(header)} cells (the header's and align's width)")
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{caption}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
