"""LaTeX text for tables a paper can `\\input`: escaping and booktabs tables. Pure functions, no
torch; the table needs only `\\usepackage{booktabs}`.
"""
from __future__ import annotations

import re
from typing import Sequence

from .names import readable

__all__ = ["escape", "booktabs", "booktabs_table"]

# LaTeX's special characters, then the non-ASCII signs the reports print (pdflatex without
# inputenc extras knows none of them); anything else outside ASCII is dropped to `?`.
_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "\u2212": "$-$", "\u2013": "--", "\u2014": "---", "\u00b1": r"$\pm$", "\u03c4": r"$\tau$",
    "\u03b4": r"$\delta$", "\u2265": r"$\geq$", "\u2264": r"$\leq$", "\u2020": r"\textdagger{}", "\u00d7": r"$\times$",
    "\u2191": r"$\uparrow$", "\u03b1": r"$\alpha$", "\u2193": r"$\downarrow$", "\u00e9": r"\'{e}", "\n": " ", "\r": " ", "\t": " ",
}


_COLUMN = re.compile(r"[lrc]|p\{\d+(\.\d+)?(cm|mm|pt|em|in)\}")


def escape(text: str) -> str:
    """`text` as LaTeX text: special characters escaped, the reports' signs (−, τ, δ, ±, ≥, …)
    as their LaTeX forms, any other character outside printable ASCII as `?`."""
    out = []
    for char in readable(str(text)):
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append("?")
    return "".join(out)


def booktabs(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | Sequence[str]) -> str:
    """A `tabular` with booktabs rules: `header` and `rows` are cells already in LaTeX (pass
    plain text through `escape`); `align` holds one column letter per cell (`"lrr"`), or one
    column spec per cell (`["p{4cm}", "r", "r"]`: l, r, c or a p{width}). A row of one cell
    `"\\midrule"` draws a rule there."""
    specs = list(align)
    if len(specs) != len(header) or not all(_COLUMN.fullmatch(spec) for spec in specs):
        raise ValueError(f"align must hold one column spec (l, r, c, p{{width}}) per column ({len(header)}), "
                         f"got {align!r}")
    lines = [f"\\begin{{tabular}}{{{''.join(specs)}}}", "\\toprule", " & ".join(header) + r" \\", "\\midrule"]
    for row in rows:
        if list(row) == ["\\midrule"]:
            lines.append("\\midrule")
            continue
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells, the header {len(header)}")
        lines.append(" & ".join(row) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def booktabs_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | Sequence[str],
                   caption: str | None = None, label: str | None = None) -> str:
    """`booktabs(header, rows, align)` in a `table` float, with its caption and label when given
    (both LaTeX already)."""
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{caption}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    return "\n".join(lines) + "\n" + booktabs(header, rows, align) + "\\end{table}\n"
