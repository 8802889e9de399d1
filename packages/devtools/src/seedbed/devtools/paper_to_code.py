"""Paper-to-code (A-1): transpile LaTeX pseudo-code into Python source.

Reads the ``algpseudocode``/``algorithmicx`` command set (``\\State``, ``\\If``, ``\\For``,
``\\Procedure``, ``\\Call``, ...) and the older uppercase ``algorithmic`` set (``\\STATE``,
``\\IF``, ``\\FOR``, ...), and maps the math inside them (``\\gets``, comparisons, ``\\in``,
``\\frac``, sub/superscripts, ``\\lfloor``/``\\rfloor``, ``\\sum`` over a range, ``\\{...\\}``
sets, ...) to Python expressions.

Conventions of the translation (documented because LaTeX math is ambiguous):

- ``x_i``, ``A_{mid}`` and ``A_{i,j}`` index (``x[i]``, ``A[mid]``, ``A[i][j]``); a subscript
  in text mode (``x_{\\text{new}}``, ``x_\\mathrm{old}``) names a variable (``x_new``, ``x_old``).
- A name followed by ``(`` is a call: ``f(x)``; ``2(n+1)`` and ``(a)(b)`` multiply, and so do
  adjacent one-letter names and numbers (``2ab`` is ``2 * ab``, ``2 a b`` is ``2 * a * b``).
  Two adjacent words (``swap x``) are prose and cannot be translated.
- ``For i = a to b`` is inclusive: ``range(a, b + 1)``; ``downto`` counts down.
- ``\\lfloor a / b \\rfloor`` is ``a // b``; any other floor is ``math.floor``.
- ``|x|`` is ``abs(x)``; ``\\|v\\|`` is the Euclidean norm ``math.hypot(*v)``.
- A block with a top-level ``\\Return`` outside any ``\\Procedure`` is wrapped in a function
  named after the ``\\caption`` (or ``algorithm``) whose parameters are its free variables.

The output always passes :func:`ast.parse`. A construct that cannot be translated raises
:class:`TranspileError` naming the LaTeX line; with ``lenient=True`` it becomes a ``# TODO:``
comment that keeps the source, followed by a call that raises if that line is ever run.
The input is only parsed, never executed.

CLI::

    python -m seedbed.devtools.paper_to_code algo.tex -o algo.py [--lenient]
"""

from __future__ import annotations

import argparse
import ast
import bisect
import builtins
import keyword
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TranspileError", "main", "transpile"]


class TranspileError(ValueError):
    """A LaTeX construct that cannot be translated; ``line`` is its 1-based line number."""

    def __init__(self, message: str, line: int) -> None:
        message = " ".join(message.split())  # one line, even when it quotes the source
        self.line = line
        self.reason = message
        super().__init__(f"line {line}: {message}")


# --------------------------------------------------------------------------------------------
# Statement-level commands: name -> (kind, number of brace arguments, takes trailing text)
# --------------------------------------------------------------------------------------------
_STATEMENTS: dict[str, tuple[str, int, bool]] = {}


def _stmt(names: str, kind: str, nargs: int = 0, text: bool = False) -> None:
    for name in names.split():
        _STATEMENTS[name] = (kind, nargs, text)


_stmt("State STATE", "state", text=True)
_stmt("Statex", "statex", text=True)
_stmt("If IF", "if", 1)
_stmt("ElsIf ELSIF", "elif", 1)
_stmt("Else ELSE", "else")
_stmt("EndIf ENDIF", "end:if")
_stmt("For FOR", "for", 1)
_stmt("ForAll FORALL", "forall", 1)
_stmt("EndFor ENDFOR", "end:for")
_stmt("While WHILE", "while", 1)
_stmt("EndWhile ENDWHILE", "end:while")
_stmt("Repeat REPEAT", "repeat")
_stmt("Until UNTIL", "until", 1)
_stmt("Loop LOOP", "loop")
_stmt("EndLoop ENDLOOP", "end:loop")
_stmt("Procedure PROCEDURE", "def", 2)
_stmt("Function FUNCTION", "def", 2)
_stmt("EndProcedure ENDPROCEDURE", "end:procedure")
_stmt("EndFunction ENDFUNCTION", "end:function")
_stmt("Return RETURN", "return", text=True)
_stmt("Require REQUIRE Ensure ENSURE Input INPUT Output OUTPUT Globals GLOBALS", "note", text=True)
_stmt("Comment COMMENT", "comment", 1)
_stmt("Print PRINT", "print", text=True)
_stmt("Break BREAK", "break")
_stmt("Continue CONTINUE", "continue")

# which block an End command closes, and the name used in messages
_OPENERS = {
    "if": "\\If",
    "for": "\\For",
    "forall": "\\ForAll",
    "while": "\\While",
    "repeat": "\\Repeat",
    "loop": "\\Loop",
    "procedure": "\\Procedure",
    "function": "\\Function",
}
_CLOSES = {
    "end:if": {"if"},
    "end:for": {"for", "forall"},
    "end:while": {"while"},
    "end:loop": {"loop"},
    "end:procedure": {"procedure", "function"},
    "end:function": {"procedure", "function"},
}

# --------------------------------------------------------------------------------------------
# Math and text commands
# --------------------------------------------------------------------------------------------
_TEXT_CMDS = set(
    [
        "text",
        "textrm",
        "textit",
        "textbf",
        "textsf",
        "texttt",
        "textsc",
        "textnormal",
        "textup",
        "emph",
        "mbox",
        "mathrm",
        "mathit",
        "mathbf",
        "mathsf",
        "mathtt",
        "mathcal",
        "mathbb",
        "mathfrak",
        "boldsymbol",
        "bm",
        "operatorname",
        "Call",
    ]
)
_SKIP_CMDS = set(
    [
        "left",
        "right",
        "big",
        "Big",
        "bigg",
        "Bigg",
        "bigl",
        "bigr",
        "Bigl",
        "Bigr",
        "biggl",
        "biggr",
        "Biggl",
        "Biggr",
        "middle",
        "quad",
        "qquad",
        "displaystyle",
        "textstyle",
        "scriptstyle",
        "mathstrut",
        "limits",
        "nolimits",
        "hfill",
        "enspace",
        "thinspace",
        "negthinspace",
        "nobreak",
        "relax",
        "strut",
    ]
)
_SKIP_WITH_ARG = {"hspace", "vspace", "label", "phantom", "hphantom", "vphantom", "ref"}
_BINOP_CMDS = {
    "cdot": "*",
    "times": "*",
    "ast": "*",
    "div": "/",
    "bmod": "%",
    "mod": "%",
    "oplus": "^",
    "ll": "<<",
    "gg": ">>",
    "cup": "|",
    "cap": "&",
    "setminus": "-",
}
_CMP_CMDS = {
    "neq": "!=",
    "ne": "!=",
    "leq": "<=",
    "le": "<=",
    "leqslant": "<=",
    "geq": ">=",
    "ge": ">=",
    "geqslant": ">=",
    "lt": "<",
    "gt": ">",
    "in": "in",
    "notin": "not in",
    "subseteq": "<=",
    "subset": "<",
    "supseteq": ">=",
    "supset": ">",
}
_BOOL_CMDS = {
    "land": "and",
    "wedge": "and",
    "And": "and",
    "AND": "and",
    "lor": "or",
    "vee": "or",
    "Or": "or",
    "OR": "or",
    "Xor": "!=",
    "XOR": "!=",
}
_NOT_CMDS = {"neg", "lnot", "Not", "NOT"}
_CONST_CMDS = {
    "infty": "math.inf",
    "pi": "math.pi",
    "TRUE": "True",
    "True": "True",
    "FALSE": "False",
    "False": "False",
    "NIL": "None",
    "Nil": "None",
    "Null": "None",
    "emptyset": "set()",
    "varnothing": "set()",
}
_WORD_CMDS = {  # commands that stand for a keyword word of the pseudo-code
    "TO": "to",
    "To": "to",
    "algorithmicto": "to",
    "DownTo": "downto",
    "Downto": "downto",
    "algorithmicdo": "do",
    "algorithmicthen": "then",
    "DO": "do",
    "THEN": "then",
    "Do": "do",
    "Then": "then",
}
_GREEK = set(
    [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
        "omicron",
        "rho",
        "sigma",
        "tau",
        "upsilon",
        "phi",
        "chi",
        "psi",
        "omega",
        "Gamma",
        "Delta",
        "Theta",
        "Lambda",
        "Xi",
        "Pi",
        "Sigma",
        "Upsilon",
        "Phi",
        "Psi",
        "Omega",
        "varepsilon",
        "vartheta",
        "varphi",
        "varrho",
        "varsigma",
        "varpi",
        "ell",
    ]
)
_GREEK_RENAME = {
    "lambda": "lam",
    "varepsilon": "epsilon",
    "vartheta": "theta",
    "varphi": "phi",
    "varrho": "rho",
    "varsigma": "sigma",
    "varpi": "pi_",
    "ell": "l",
}
# functions written as commands: name -> Python callable
_FUNC_CMDS = {
    "log": "math.log",
    "ln": "math.log",
    "lg": "math.log2",
    "exp": "math.exp",
    "sin": "math.sin",
    "cos": "math.cos",
    "tan": "math.tan",
    "arcsin": "math.asin",
    "arccos": "math.acos",
    "arctan": "math.atan",
    "sinh": "math.sinh",
    "cosh": "math.cosh",
    "tanh": "math.tanh",
    "gcd": "math.gcd",
    "abs": "abs",
    "max": "max",
    "min": "min",
}
_DOTS = {"ldots", "dots", "cdots", "dotsc"}
_ASSIGN_CMDS = {"gets", "leftarrow", "coloneqq"}
_UNICODE = {
    "←": ("cmd", "gets"),
    "≤": ("op", "<="),
    "≥": ("op", ">="),
    "≠": ("op", "!="),
    "×": ("op", "*"),
    "·": ("op", "*"),
    "∈": ("cmd", "in"),
    "∉": ("cmd", "notin"),
    "∞": ("cmd", "infty"),
    "…": ("cmd", "ldots"),
    "∧": ("cmd", "land"),
    "∨": ("cmd", "lor"),
    "¬": ("cmd", "neg"),
}
_TWO_CHAR_OPS = ("<=", ">=", "!=", "==", ":=", "..", "**", "//", "<<", ">>", "+=", "-=")
_ONE_CHAR_OPS = set("+-*/=<>()[],;:|^_.!'@%")

_OPEN = {"(": ")", "[": "]", "{": "}", "\\{": "\\}"}
_OPEN_CMD = {"lfloor": "rfloor", "lceil": "rceil", "lvert": "rvert", "lVert": "rVert"}
_TOGGLES = {"|", "‖"}
_COMPARE_OPS = {"=", "==", "<", ">", "<=", ">=", "!="}
_ARITH_OPS = {"+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "**": "**", "//": "//"}
_ARITH_OPS |= {"<<": "<<", ">>": ">>", "@": "@"}


@dataclass
class _Tok:
    kind: str  # "num" | "name" | "cmd" | "op"
    value: str
    pos: int  # offset in the whole LaTeX source (for line numbers)
    text: bool = False  # came from text mode (\text{...}, \mathrm{...}, ...)

    def is_op(self, *values: str) -> bool:
        return self.kind == "op" and self.value in values

    def is_cmd(self, *values: str) -> bool:
        return self.kind == "cmd" and self.value in values

    def is_word(self, *values: str) -> bool:
        return self.kind == "name" and self.value.lower() in values


@dataclass
class _Stmt:
    kind: str
    cmd: str  # the LaTeX command as written, e.g. "State"
    args: list[tuple[str, int]]  # brace arguments and their offsets
    text: str  # trailing text (for text-taking commands)
    text_pos: int
    pos: int  # offset of the command
    option: str = ""  # [optional] argument, kept as a comment
    source: str = ""  # the statement's LaTeX text, for TODO lines


# --------------------------------------------------------------------------------------------
# Source scanning
# --------------------------------------------------------------------------------------------
class _Source:
    """The LaTeX text with comments blanked out, and offset -> line lookup."""

    def __init__(self, text: str) -> None:
        self.raw = text
        self.text = re.sub(r"(?<!\\)%[^\n]*", lambda m: " " * len(m.group(0)), text)
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self._newlines, pos - 1) + 1


def _read_group(text: str, i: int, open_: str = "{", close: str = "}") -> tuple[str, int, int]:
    """The brace group starting at ``text[i] == open_``: (content, content offset, end)."""
    depth = 0
    j = i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], i + 1, j + 1
        j += 1
    raise ValueError("unclosed group")


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


_CMD_RE = re.compile(r"\\([A-Za-z]+)")


def _scan(src: _Source, start: int, end: int) -> list[_Stmt]:
    """Split the algorithmic body ``src.text[start:end]`` into statements."""
    text = src.text
    out: list[_Stmt] = []
    i = start
    while True:
        i = _skip_space(text, i)
        if i >= end:
            break
        m = _CMD_RE.match(text, i)
        if not m or m.group(1) not in _STATEMENTS:
            j = _next_statement(text, i, end)
            chunk = " ".join(text[i:j].split())
            if m and not _is_known_cmd(m.group(1)):
                raise TranspileError(f"unknown command \\{m.group(1)}", src.line(i))
            raise TranspileError(
                f"text outside a statement: {chunk!r} (a \\State is missing?)", src.line(i)
            )
        name = m.group(1)
        kind, nargs, takes_text = _STATEMENTS[name]
        j = m.end()
        option = ""
        if kind in ("if", "elif", "for", "forall", "while", "until", "state") and (
            _skip_space(text, j) < end and text[_skip_space(text, j)] == "["
        ):
            k = _skip_space(text, j)
            try:
                option, _, j = _read_group(text, k, "[", "]")
            except ValueError:
                raise TranspileError(f"unclosed [ after \\{name}", src.line(k)) from None
        args: list[tuple[str, int]] = []
        for _ in range(nargs):
            k = _skip_space(text, j)
            if k >= end or text[k] != "{":
                raise TranspileError(f"\\{name} needs {nargs} {{...}} argument(s)", src.line(i))
            try:
                content, cpos, j = _read_group(text, k)
            except ValueError:
                raise TranspileError(f"unclosed {{ in \\{name}", src.line(k)) from None
            if j > end:
                raise TranspileError(f"unclosed {{ in \\{name}", src.line(k))
            args.append((content, cpos))
        body, body_pos = "", j
        if takes_text:
            k = _next_statement(text, j, end)
            body, body_pos, j = text[j:k], j, k
        else:
            k = _skip_space(text, j)
            if k < end and not _CMD_RE.match(text, k):
                stray = " ".join(text[k : _next_statement(text, k, end)].split())
                raise TranspileError(f"unexpected text {stray!r} after \\{name}", src.line(k))
        source = " ".join(src.raw[i:j].split())
        out.append(_Stmt(kind, name, args, body, body_pos, i, option.strip(), source))
        i = j
    return out


def _next_statement(text: str, i: int, end: int) -> int:
    """Offset of the next statement command at brace depth 0 (or ``end``)."""
    depth = 0
    j = i
    while j < end:
        c = text[j]
        if c == "\\":
            m = _CMD_RE.match(text, j)
            if m:
                if depth == 0 and m.group(1) in _STATEMENTS and j > i:
                    return j
                j = m.end()
                continue
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        j += 1
    return end


def _is_known_cmd(name: str) -> bool:
    return (
        name in _STATEMENTS
        or name in _TEXT_CMDS
        or name in _SKIP_CMDS
        or name in _SKIP_WITH_ARG
        or name in _BINOP_CMDS
        or name in _CMP_CMDS
        or name in _BOOL_CMDS
        or name in _NOT_CMDS
        or name in _CONST_CMDS
        or name in _WORD_CMDS
        or name in _GREEK
        or name in _FUNC_CMDS
        or name in _DOTS
        or name in _ASSIGN_CMDS
        or name in _OPEN_CMD
        or name in _OPEN_CMD.values()
        or name in {"frac", "dfrac", "tfrac", "sqrt", "sum", "prod", "arg", "argmax", "argmin"}
        or name == "top"
    )


# --------------------------------------------------------------------------------------------
# Tokenizer for the math/text inside statements
# --------------------------------------------------------------------------------------------
_NUM_RE = re.compile(r"\d+(\.\d+)?")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _tokenize(text: str, base: int, src: _Source, *, text_mode: bool = False) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(text)

    def err(msg: str, at: int) -> TranspileError:
        return TranspileError(msg, src.line(base + at))

    while i < n:
        c = text[i]
        if c.isspace() or c in "$~&":
            i += 1
            continue
        if c == "\\":
            m = _CMD_RE.match(text, i)
            if m:
                name = m.group(1)
                j = m.end()
                if name == "operatorname" and j < n and text[j] == "*":
                    j += 1
                if name in _TEXT_CMDS:
                    groups = 2 if name == "Call" else 1
                    parts = []
                    for _ in range(groups):
                        k = _skip_space(text, j)
                        if k >= n or text[k] != "{":
                            raise err(f"\\{name} needs a {{...}} argument", i)
                        try:
                            content, cpos, j = _read_group(text, k)
                        except ValueError:
                            raise err(f"unclosed {{ in \\{name}", k) from None
                        parts.append((content, cpos))
                    if name == "Call":
                        fn = _tokenize(parts[0][0], base + parts[0][1], src, text_mode=True)
                        if len(fn) != 1 or fn[0].kind != "name":
                            raise err(f"\\Call needs a procedure name, got {parts[0][0]!r}", i)
                        toks.append(fn[0])
                        toks.append(_Tok("op", "(", base + parts[1][1]))
                        toks.extend(_tokenize(parts[1][0], base + parts[1][1], src))
                        toks.append(_Tok("op", ")", base + j - 1))
                    else:
                        content, cpos = parts[0]
                        toks.extend(_tokenize(content, base + cpos, src, text_mode=True))
                    i = j
                    continue
                if name in _SKIP_WITH_ARG:
                    k = _skip_space(text, j)
                    if k < n and text[k] == "{":
                        try:
                            _, _, j = _read_group(text, k)
                        except ValueError:
                            raise err(f"unclosed {{ in \\{name}", k) from None
                    i = j
                    continue
                if name in _SKIP_CMDS:
                    i = j
                    continue
                if name in _WORD_CMDS:
                    toks.append(_Tok("name", _WORD_CMDS[name], base + i))
                    i = j
                    continue
                if name in _STATEMENTS:
                    raise err(f"\\{name} cannot appear inside an expression", i)
                if not _is_known_cmd(name):
                    raise err(f"unknown command \\{name}", i)
                toks.append(_Tok("cmd", name, base + i))
                i = j
                continue
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt in "{}":
                toks.append(_Tok("op", "\\" + nxt, base + i))
            elif nxt == "|":
                toks.append(_Tok("op", "‖", base + i))
            elif nxt in "%#&$":
                toks.append(_Tok("op", nxt, base + i))
            elif nxt == "_":
                # an escaped underscore joins a name: max\_val
                if toks and toks[-1].kind == "name" and i > 0 and not text[i - 1].isspace():
                    m2 = re.compile(r"[A-Za-z0-9]+").match(text, i + 2)
                    tail = m2.group(0) if m2 else ""
                    toks[-1].value += "_" + tail
                    i += 2 + len(tail)
                    continue
                toks.append(_Tok("name", "_", base + i))
            elif nxt.isspace() or not nxt:
                raise err("a backslash followed by no command name", i)
            elif nxt not in ",;:! \\()[]":
                raise err(f"unknown command \\{nxt}", i)
            i += 2
            continue
        if c in _UNICODE:
            kind, value = _UNICODE[c]
            toks.append(_Tok(kind, value, base + i))
            i += 1
            continue
        m = _NUM_RE.match(text, i)
        if m:
            toks.append(_Tok("num", m.group(0), base + i))
            i = m.end()
            continue
        m = _NAME_RE.match(text, i)
        if m:
            value = m.group(0)
            j = m.end()
            while text_mode and j < n and text[j] == "_":  # literal underscores in \texttt
                m2 = re.compile(r"_[A-Za-z0-9]+").match(text, j)
                if not m2:
                    break
                value += m2.group(0)
                j = m2.end()
            toks.append(_Tok("name", value, base + i, text_mode))
            i = j
            continue
        two = text[i : i + 2]
        if two in _TWO_CHAR_OPS:
            toks.append(_Tok("op", two, base + i))
            i += 2
            continue
        if c in _ONE_CHAR_OPS:
            toks.append(_Tok("op", c, base + i))
            i += 1
            continue
        if c in "{}":
            toks.append(_Tok("op", c, base + i))
            i += 1
            continue
        raise err(f"unexpected character {c!r}", i)
    return toks


# --------------------------------------------------------------------------------------------
# Expression translation
# --------------------------------------------------------------------------------------------
def _closer_of(t: _Tok) -> str | None:
    if t.kind == "op" and t.value in _OPEN:
        return _OPEN[t.value]
    if t.kind == "cmd" and t.value in _OPEN_CMD:
        return _OPEN_CMD[t.value]
    return None


def _match(toks: Sequence[_Tok], i: int, line: Callable[[int], int]) -> int:
    """Index of the token closing the group opened at ``toks[i]``."""
    t = toks[i]
    if t.kind == "op" and t.value in _TOGGLES:
        for j in range(i + 1, len(toks)):
            if toks[j].kind == "op" and toks[j].value == t.value:
                return j
        raise TranspileError(f"unclosed {t.value}", line(t.pos))
    close = _closer_of(t)
    depth = 0
    for j in range(i, len(toks)):
        u = toks[j]
        if (u.kind, u.value) == (t.kind, t.value):
            depth += 1
        elif u.value == close and u.kind == ("cmd" if t.kind == "cmd" else "op"):
            depth -= 1
            if depth == 0:
                return j
    opener = ("\\" + t.value) if t.kind == "cmd" else t.value
    raise TranspileError(f"unclosed {opener}", line(t.pos))


def _split_top(
    toks: Sequence[_Tok], pred: Callable[[_Tok], bool], line: Callable[[int], int]
) -> list[list[_Tok]]:
    """Split ``toks`` at the depth-0 tokens where ``pred`` holds (those tokens are dropped)."""
    parts: list[list[_Tok]] = [[]]
    i = 0
    while i < len(toks):
        t = toks[i]
        if _closer_of(t) is not None or t.is_op(*_TOGGLES):
            j = _match(toks, i, line)
            parts[-1].extend(toks[i : j + 1])
            i = j + 1
            continue
        if pred(t):
            parts.append([])
        else:
            parts[-1].append(t)
        i += 1
    return parts


def _parse(src: str, mode: str = "exec") -> Any:
    """:func:`ast.parse` without SyntaxWarnings (malformed input is reported, not warned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return ast.parse(src, mode=mode)


def _unparse(src: str, where: str, line: int, mode: str = "eval") -> str:
    try:
        tree = _parse(src, mode=mode)
    except SyntaxError:
        raise TranspileError(f"cannot translate {where!r}", line) from None
    return ast.unparse(tree)


def _plus(src: str, k: int) -> str:
    """``src + k`` simplified: ``n - 1`` + 1 -> ``n``; ``3`` + 1 -> ``4``."""
    node = _parse(src, mode="eval").body
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return str(node.value + k)
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, (ast.Add, ast.Sub))
        and isinstance(node.right, ast.Constant)
        and isinstance(node.right.value, int)
    ):
        off = node.right.value if isinstance(node.op, ast.Add) else -node.right.value
        off += k
        left = ast.unparse(node.left)
        if off == 0:
            return left
        return f"{left} + {off}" if off > 0 else f"{left} - {-off}"
    return ast.unparse(ast.BinOp(node, ast.Add() if k > 0 else ast.Sub(), ast.Constant(abs(k))))


def _fold(src: str) -> str:
    """Constant-fold an integer expression such as ``3 - 1``; anything else is kept."""
    node = _parse(src, mode="eval").body
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, (ast.Add, ast.Sub))
        and all(
            isinstance(x, ast.Constant) and type(x.value) is int for x in (node.left, node.right)
        )
    ):
        a, b = node.left.value, node.right.value  # type: ignore[attr-defined]
        return str(a + b if isinstance(node.op, ast.Add) else a - b)
    return src


def _range(start: str, stop_incl: str, step: str | None, down: bool) -> str:
    if down:
        neg = "-1" if step is None else f"-({step})"
        return f"range({start}, {_plus(stop_incl, -1)}, {neg})"
    if step is None:
        return f"range({start}, {_plus(stop_incl, 1)})"
    return f"range({start}, {_plus(stop_incl, 1)}, {step})"


_NAME_KINDS = ("name1", "word")


class _Expr:
    """Translate a token list of LaTeX math/text into a Python expression string."""

    def __init__(self, src: _Source) -> None:
        self.src = src

    def line(self, pos: int) -> int:
        return self.src.line(pos)

    def err(self, msg: str, tok: _Tok) -> TranspileError:
        return TranspileError(msg, self.line(tok.pos))

    # ---- public pieces ----------------------------------------------------------------------
    def expr(self, toks: Sequence[_Tok]) -> str:
        out: list[str] = []
        prev: str | None = None  # kind of the last operand, or None after an operator
        seg = 0  # start of the current boolean segment in ``out`` ("x is even")
        i = 0
        while i < len(toks):
            t = toks[i]
            v = t.value
            if t.kind == "op" and v in ("+", "-") and prev is None:
                out.append(v)
                i += 1
                continue
            binop = None
            if t.kind == "op" and v in _ARITH_OPS:
                binop = _ARITH_OPS[v]
            elif t.kind == "op" and v in _COMPARE_OPS:
                binop = "==" if v == "=" else v
            elif t.kind == "cmd" and v in _BINOP_CMDS:
                binop = _BINOP_CMDS[v]
            elif t.kind == "cmd" and v in _CMP_CMDS:
                binop = _CMP_CMDS[v]
            elif t.is_word("mod"):
                binop = "%"
            elif t.is_word("div"):
                binop = "//"
            elif t.is_word("in") and prev is not None:
                binop = "in"
            if binop is not None:
                if prev is None:
                    raise self.err(f"operator {v!r} is missing its left operand", t)
                out.append(f" {binop} ")
                prev = None
                i += 1
                continue
            boolop = None
            if t.kind == "cmd" and v in _BOOL_CMDS:
                boolop = _BOOL_CMDS[v]
            elif t.is_word("and", "or"):
                boolop = v.lower()
            if boolop is not None:
                if prev is None:
                    raise self.err(f"{v!r} is missing its left operand", t)
                out.append(f" {boolop} ")
                prev, seg = None, len(out)
                i += 1
                continue
            if (t.kind == "cmd" and v in _NOT_CMDS) or t.is_word("not"):
                if prev is not None and i + 1 < len(toks) and toks[i + 1].is_word("in"):
                    out.append(" not in ")
                    i += 2
                    continue
                out.append("not ")
                prev = None
                i += 1
                continue
            if t.is_word("is") and i + 1 < len(toks) and toks[i + 1].is_word("even", "odd"):
                if prev is None:
                    raise self.err("'is even/odd' is missing its operand", t)
                parity = 0 if toks[i + 1].value.lower() == "even" else 1
                out[seg:] = [f"({''.join(out[seg:])}) % 2 == {parity}"]
                prev = "closed"
                i += 2
                continue
            if t.is_op(","):
                out.append(", ")
                prev = None
                i += 1
                continue
            if (t.kind == "cmd" and v in _ASSIGN_CMDS) or t.is_op(":="):
                raise self.err("assignment inside an expression", t)
            if t.is_cmd(*_DOTS) or t.is_op(".."):
                raise self.err("'\\ldots' outside a set or loop range", t)
            if t.kind == "op" and v in (")", "]", "}", "\\}"):
                raise self.err(f"unmatched {v!r}", t)
            if t.kind == "cmd" and v in _OPEN_CMD.values():
                raise self.err(f"unmatched \\{v}", t)
            piece, kind, i = self.operand(toks, i)
            if prev is not None:
                both_names = prev in _NAME_KINDS and kind in _NAME_KINDS
                if (both_names and "word" in (prev, kind)) or (prev == "word" and kind == "num"):
                    words = " ".join(_tok_text(u) for u in toks)
                    raise self.err(f"cannot translate text {words!r}", t)
                out.append(" * ")
            out.append(piece)
            prev = kind
        if out and prev is None and out[-1].strip() not in ("", ","):
            raise self.err("expression ends with an operator", toks[-1])
        return "".join(out).strip().rstrip(",")

    def operand(self, toks: Sequence[_Tok], i: int) -> tuple[str, str, int]:
        """One operand with its postfix operators: (python, kind, next index)."""
        piece, kind, i = self.atom(toks, i)
        while i < len(toks):
            t = toks[i]
            if t.is_op("(") and kind in ("name1", "word", "call"):
                j = _match(toks, i, self.line)
                piece = f"{piece}({self.expr(toks[i + 1 : j])})"
                kind, i = "call", j + 1
            elif t.is_op("[") and kind in ("name1", "word", "call", "closed"):
                j = _match(toks, i, self.line)
                parts = _split_top(toks[i + 1 : j], lambda u: u.is_op(":"), self.line)
                index = ":".join(self.expr(p) for p in parts)
                piece = f"{piece}[{index}]"
                kind, i = "call", j + 1
            elif t.is_op("_"):
                sub, i = self.script(toks, i + 1, t)
                word = self._subscript_word(sub)
                if word is not None and kind in _NAME_KINDS:
                    piece, kind = f"{piece}_{word}", "word"
                else:
                    index = self.expr(sub)
                    node = _parse(index or "()", mode="eval").body
                    if isinstance(node, ast.Tuple):
                        index = "][".join(ast.unparse(e) for e in node.elts)
                    piece, kind = f"{piece}[{index}]", "call"
            elif t.is_op("^"):
                sup, i = self.script(toks, i + 1, t)
                if len(sup) == 1 and sup[0].is_cmd("top"):
                    piece, kind = f"{piece}.T", "call"
                else:
                    piece, kind = f"{piece} ** ({self.expr(sup)})", "closed"
            elif t.is_op("'") and kind in _NAME_KINDS:
                piece, kind, i = piece + "_prime", "word", i + 1
            elif (
                t.is_op(".")
                and kind in ("name1", "word", "call")
                and i + 1 < len(toks)
                and toks[i + 1].kind == "name"
            ):
                piece, kind, i = f"{piece}.{_pyname(toks[i + 1].value)}", "call", i + 2
            else:
                break
        return piece, kind, i

    @staticmethod
    def _subscript_word(sub: Sequence[_Tok]) -> str | None:
        if len(sub) == 1 and sub[0].kind == "name" and sub[0].text:
            return sub[0].value
        return None

    def script(self, toks: Sequence[_Tok], i: int, at: _Tok) -> tuple[list[_Tok], int]:
        """The tokens of a sub/superscript argument: a ``{...}`` group or one token."""
        if i >= len(toks):
            raise self.err(f"{at.value!r} needs an argument", at)
        t = toks[i]
        if t.is_op("{"):
            j = _match(toks, i, self.line)
            return list(toks[i + 1 : j]), j + 1
        if t.is_op("-", "+") and i + 1 < len(toks):  # x^-1
            return list(toks[i : i + 2]), i + 2
        return [t], i + 1

    def group_or_token(self, toks: Sequence[_Tok], i: int, at: _Tok) -> tuple[str, int]:
        if i >= len(toks):
            raise self.err(f"\\{at.value} needs an argument", at)
        if toks[i].is_op("{"):
            j = _match(toks, i, self.line)
            return self.expr(toks[i + 1 : j]), j + 1
        piece, _, j = self.atom(toks, i)
        return piece, j

    def atom(self, toks: Sequence[_Tok], i: int) -> tuple[str, str, int]:
        t = toks[i]
        v = t.value
        if t.kind == "num":
            return v, "num", i + 1
        if t.kind == "name":
            low = v.lower()
            if low in ("true", "false"):
                return low.capitalize(), "closed", i + 1
            if low in ("nil", "null", "none"):
                return "None", "closed", i + 1
            if low in ("to", "downto", "do", "then", "step", "by", "each"):
                raise self.err(f"unexpected word {v!r}", t)
            if low in ("length", "size") and i + 1 < len(toks) and toks[i + 1].is_op("("):
                return "len", "word", i + 1
            return _pyname(v), ("name1" if len(v) == 1 else "word"), i + 1
        if t.kind == "op":
            if v in ("(", "[", "{"):
                j = _match(toks, i, self.line)
                inner = self.expr(toks[i + 1 : j])
                if v == "[":
                    return f"[{inner}]", "closed", j + 1
                return f"({inner})", "closed", j + 1
            if v == "\\{":
                j = _match(toks, i, self.line)
                return self.set_literal(toks[i + 1 : j], t), "closed", j + 1
            if v == "|":
                j = _match(toks, i, self.line)
                return f"abs({self.expr(toks[i + 1 : j])})", "closed", j + 1
            if v == "‖":
                j = _match(toks, i, self.line)
                return f"math.hypot(*({self.expr(toks[i + 1 : j])}))", "closed", j + 1
            raise self.err(f"unexpected {v!r}", t)
        # commands
        if v in _CONST_CMDS:
            return _CONST_CMDS[v], "closed", i + 1
        if v in _GREEK:
            return _GREEK_RENAME.get(v, v), "name1", i + 1
        if v in ("frac", "dfrac", "tfrac"):
            num, j = self.group_or_token(toks, i + 1, t)
            den, j = self.group_or_token(toks, j, t)
            return f"(({num}) / ({den}))", "closed", j
        if v == "sqrt":
            j = i + 1
            root = None
            if j < len(toks) and toks[j].is_op("["):
                k = _match(toks, j, self.line)
                root = self.expr(toks[j + 1 : k])
                j = k + 1
            arg, j = self.group_or_token(toks, j, t)
            if root is None:
                return f"math.sqrt({arg})", "closed", j
            return f"(({arg}) ** (1 / ({root})))", "closed", j
        if v in ("lfloor", "lceil"):
            j = _match(toks, i, self.line)
            inner = self.expr(toks[i + 1 : j])
            node = _parse(inner or "()", mode="eval").body
            if v == "lfloor" and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                node.op = ast.FloorDiv()
                return f"({ast.unparse(node)})", "closed", j + 1
            fn = "math.floor" if v == "lfloor" else "math.ceil"
            return f"{fn}({inner})", "closed", j + 1
        if v == "lvert":
            j = _match(toks, i, self.line)
            return f"abs({self.expr(toks[i + 1 : j])})", "closed", j + 1
        if v == "lVert":
            j = _match(toks, i, self.line)
            return f"math.hypot(*({self.expr(toks[i + 1 : j])}))", "closed", j + 1
        if v in ("sum", "prod"):
            return self.big_operator(toks, i)
        if v == "arg" and i + 1 < len(toks) and toks[i + 1].is_cmd("max", "min"):
            return self.argext(toks, i + 1, toks[i + 1].value)
        if v in ("argmax", "argmin"):
            return self.argext(toks, i, v[3:])
        if v in _FUNC_CMDS:
            return self.function(toks, i)
        raise self.err(f"\\{v} cannot be translated here", t)

    def set_literal(self, inner: Sequence[_Tok], at: _Tok) -> str:
        if not inner:
            return "set()"
        parts = _split_top(inner, lambda u: u.is_op(","), self.line)
        dots = [k for k, p in enumerate(parts) if len(p) == 1 and p[0].is_cmd(*_DOTS)]
        if not dots:
            if any(u.is_op("..") for u in inner):
                lo, _, hi = _partition(inner, lambda u: u.is_op(".."))
                return _range(self.expr(lo), self.expr(hi), None, False)
            return "{" + self.expr(inner) + "}"
        if len(dots) != 1 or dots[0] not in (1, 2) or dots[0] != len(parts) - 2:
            raise self.err("a set with \\ldots must read {a, \\ldots, b} or {a, b, \\ldots, c}", at)
        first = self.expr(parts[0])
        last = self.expr(parts[-1])
        step = None
        if dots[0] == 2:
            second = self.expr(parts[1])
            step = _fold(_unparse(f"({second}) - ({first})", "step", self.line(at.pos)))
        return _range(first, last, step, False)

    def big_operator(self, toks: Sequence[_Tok], i: int) -> tuple[str, str, int]:
        t = toks[i]
        j = i + 1
        lower: list[_Tok] | None = None
        upper: list[_Tok] | None = None
        while j < len(toks) and toks[j].is_op("_", "^"):
            arg, k = self.script(toks, j + 1, toks[j])
            if toks[j].value == "_":
                lower = arg
            else:
                upper = arg
            j = k
        if lower is None:
            raise self.err(f"\\{t.value} needs a lower limit such as _{{i=1}}", t)
        # the summand runs to the next +, -, comparison, comma or boolean operator
        k = j
        while k < len(toks):
            u = toks[k]
            if _closer_of(u) is not None or u.is_op(*_TOGGLES):
                k = _match(toks, k, self.line) + 1
                continue
            stop = (
                (u.is_op("+", "-") and k > j)
                or u.is_op(",", ";", *_COMPARE_OPS)
                or (u.kind == "cmd" and (u.value in _CMP_CMDS or u.value in _BOOL_CMDS))
                or u.is_word("and", "or", "then", "do", "to")
                or u.is_cmd(*_ASSIGN_CMDS)
            )
            if stop:
                break
            k += 1
        if k == j:
            raise self.err(f"\\{t.value} has no summand", t)
        body = self.expr(toks[j:k])
        gen = self.generator(lower, upper, t)
        fn = "sum" if t.value == "sum" else "math.prod"
        return f"{fn}({body} {gen})", "closed", k

    def generator(self, lower: Sequence[_Tok], upper: Sequence[_Tok] | None, at: _Tok) -> str:
        var, op, rest = _partition(
            lower, lambda u: u.is_op("=", ":=") or u.is_cmd("in", *_ASSIGN_CMDS)
        )
        if op is None or not var:
            raise self.err("the limit must read i=a or x \\in S", at)
        target = self.expr(var)
        if op.is_cmd("in"):
            if upper is not None:
                raise self.err("a limit x \\in S takes no upper limit", at)
            return f"for {target} in {self.expr(rest)}"
        if upper is None:
            raise self.err("a limit i=a needs an upper limit ^{b}", at)
        return f"for {target} in {_range(self.expr(rest), self.expr(upper), None, False)}"

    def argext(self, toks: Sequence[_Tok], i: int, which: str) -> tuple[str, str, int]:
        t = toks[i]
        if i + 1 >= len(toks) or not toks[i + 1].is_op("_"):
            raise self.err(f"arg{which} needs a subscript x \\in S", t)
        lower, j = self.script(toks, i + 2, toks[i + 1])
        var, op, rest = _partition(lower, lambda u: u.is_cmd("in"))
        if op is None:
            raise self.err(f"arg{which} needs a subscript x \\in S", t)
        body, _kind, k = self.operand(toks, j)
        while k < len(toks) and not (
            toks[k].is_op("+", "-", ",", *_COMPARE_OPS) or toks[k].kind == "cmd"
        ):
            more, _, k = self.operand(toks, k)
            body = f"{body} * {more}"
        return f"{which}({self.expr(rest)}, key=lambda {self.expr(var)}: {body})", "closed", k

    def function(self, toks: Sequence[_Tok], i: int) -> tuple[str, str, int]:
        t = toks[i]
        fn = _FUNC_CMDS[t.value]
        j = i + 1
        base: str | None = None
        if j < len(toks) and toks[j].is_op("_"):
            sub, j2 = self.script(toks, j + 1, toks[j])
            if t.value == "log":
                base = self.expr(sub)
                j = j2
            elif t.value in ("max", "min"):
                k = j2
                if k >= len(toks):
                    raise self.err(f"\\{t.value}_{{...}} needs an expression", t)
                body, _, k = self.operand(toks, k)
                return f"{fn}({body} {self.generator(sub, None, t)})", "closed", k
        if base == "2":
            fn, base = "math.log2", None
        elif base == "10":
            fn, base = "math.log10", None
        if j < len(toks) and toks[j].is_op("("):
            k = _match(toks, j, self.line)
            arg = self.expr(toks[j + 1 : k])
            j = k + 1
        elif j < len(toks) and toks[j].is_op("\\{"):
            k = _match(toks, j, self.line)
            arg = self.set_literal(toks[j + 1 : k], toks[j])
            j = k + 1
        else:
            if j >= len(toks):
                raise self.err(f"\\{t.value} needs an argument", t)
            arg, _, j = self.operand(toks, j)
        if base is not None:
            return f"{fn}({arg}, {base})", "closed", j
        return f"{fn}({arg})", "closed", j


def _partition(
    toks: Sequence[_Tok], pred: Callable[[_Tok], bool]
) -> tuple[list[_Tok], _Tok | None, list[_Tok]]:
    """Split at the first depth-0 token where ``pred`` holds."""
    depth = 0
    for k, u in enumerate(toks):
        if _closer_of(u) is not None:
            depth += 1
        elif u.kind in ("op", "cmd") and u.value in (*_OPEN.values(), *_OPEN_CMD.values()):
            depth -= 1
        elif depth == 0 and pred(u):
            return list(toks[:k]), u, list(toks[k + 1 :])
    return list(toks), None, []


def _pyname(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    if name in ("True", "False", "None"):
        return name
    if keyword.iskeyword(name):
        return name + "_"
    return name


# --------------------------------------------------------------------------------------------
# Statement translation and emission
# --------------------------------------------------------------------------------------------
@dataclass
class _Frame:
    kind: str  # "if", "for", "forall", "while", "repeat", "loop", "procedure", "function"
    line: int
    body: int = 0  # statements emitted in the current branch


@dataclass
class _Line:
    depth: int
    code: str
    top_def: bool  # belongs to a module-level def (not wrapped)


@dataclass
class _Block:
    lines: list[_Line] = field(default_factory=list)
    uses_todo: bool = False


class _Translator:
    def __init__(self, src: _Source, lenient: bool) -> None:
        self.src = src
        self.lenient = lenient
        self.x = _Expr(src)
        self.block = _Block()
        self.stack: list[_Frame] = []

    # ---- helpers ------------------------------------------------------------------------------
    def tokens(self, text: str, pos: int) -> list[_Tok]:
        return _tokenize(text, pos, self.src)

    def emit(self, code: str, depth: int | None = None) -> None:
        d = len(self.stack) if depth is None else depth
        in_def = any(f.kind in ("procedure", "function") for f in self.stack) or (
            code.startswith("def ") and d == 0
        )
        self.block.lines.append(_Line(d, code, in_def))

    def count(self) -> None:
        if self.stack:
            self.stack[-1].body += 1

    def todo(self, stmt: _Stmt, err: TranspileError) -> None:
        self.emit(f"# TODO: {stmt.source}  (line {err.line}: {err.reason})")

    def todo_call(self, line: int) -> str:
        self.block.uses_todo = True
        return f"_untranslated({line})"

    def fill(self, frame: _Frame) -> None:
        if frame.body == 0:
            self.emit("pass", len(self.stack))

    def line(self, pos: int) -> int:
        return self.src.line(pos)

    def cond(self, text: str, pos: int) -> str:
        toks = self.tokens(text, pos)
        while toks and toks[-1].is_word("then", "do"):
            toks.pop()
        if not toks:
            raise TranspileError("empty condition", self.line(pos))
        return _unparse(self.x.expr(toks), text.strip(), self.line(pos))

    # ---- statements ---------------------------------------------------------------------------
    def run(self, stmts: Sequence[_Stmt]) -> None:
        for s in stmts:
            try:
                try:
                    self.statement(s)
                except TranspileError:
                    raise
                except (SyntaxError, ValueError):
                    # a malformed piece that reached an internal parse: same clear error
                    raise TranspileError(
                        f"cannot translate {s.source!r}", self.line(s.pos)
                    ) from None
            except TranspileError as e:
                if not self.lenient:
                    raise
                self.recover(s, e)
        while self.stack:
            f = self.stack[-1]
            unclosed = TranspileError(
                f"unclosed {_OPENERS[f.kind]} (opened at line {f.line})", f.line
            )
            if not self.lenient:
                raise unclosed
            self.fill(f)
            self.stack.pop()
            self.emit(f"# TODO: {_OPENERS[f.kind]} from line {f.line} was never closed")

    def recover(self, s: _Stmt, e: TranspileError) -> None:
        """Lenient mode: a TODO line that keeps the source, then code that fails if run."""
        self.todo(s, e)
        k = s.kind
        call = self.todo_call(e.line)
        if k in ("if", "while"):
            self.emit(f"{k} {call}:")
            self.stack.append(_Frame(k, self.line(s.pos)))
        elif k == "elif":
            if self.stack and self.stack[-1].kind == "if":
                self.fill(self.stack[-1])
                self.emit(f"elif {call}:", len(self.stack) - 1)
                self.stack[-1].body = 0
        elif k in ("for", "forall"):
            self.emit(f"for _ in {call}:")
            self.stack.append(_Frame(k, self.line(s.pos)))
        elif k == "def":
            self.emit(f"def _procedure_line_{e.line}(*args, **kwargs):")
            self.stack.append(_Frame("procedure", self.line(s.pos)))
            self.emit(call)
            self.count()
        elif k == "until":
            if self.stack and self.stack[-1].kind == "repeat":
                self.emit(f"if {call}:")
                self.emit("break", len(self.stack) + 1)
                self.stack.pop()
        elif k in ("state", "return", "print"):
            self.emit(call)
            self.count()

    def statement(self, s: _Stmt) -> None:
        k = s.kind
        ln = self.line(s.pos)
        if s.option:
            self.emit(f"# {_plain(s.option)}")
        if k == "state":
            self.state(s)
        elif k == "statex":
            if s.text.strip():
                self.emit(f"# {_plain(s.text)}")
        elif k == "note":
            label = s.cmd.capitalize()
            self.emit(f"# {label}: {_plain(s.text)}" if s.text.strip() else f"# {label}:")
        elif k == "comment":
            text = _plain(s.args[0][0])
            if self.block.lines:
                last = self.block.lines[-1]
                last.code = f"{last.code}  # {text}"
            else:
                self.emit(f"# {text}")
        elif k == "return":
            toks = self.tokens(s.text, s.text_pos)
            if toks:
                value = _unparse(self.x.expr(toks), _plain(s.text), ln)
                self.emit(f"return {value}")
            else:
                self.emit("return")
            self.count()
        elif k == "print":
            toks = self.tokens(s.text, s.text_pos)
            value = _unparse(self.x.expr(toks), _plain(s.text), ln) if toks else ""
            self.emit(f"print({value})")
            self.count()
        elif k in ("break", "continue"):
            if not any(f.kind in ("for", "forall", "while", "repeat", "loop") for f in self.stack):
                raise TranspileError(f"\\{s.cmd} outside a loop", ln)
            self.emit(k)
            self.count()
        elif k in ("if", "while"):
            c = self.cond(*s.args[0])
            self.count()
            self.emit(f"{k} {c}:")
            self.stack.append(_Frame(k, ln))
        elif k in ("elif", "else"):
            if not self.stack or self.stack[-1].kind != "if":
                raise TranspileError(f"\\{s.cmd} without an open \\If", ln)
            c = self.cond(*s.args[0]) if k == "elif" else ""
            f = self.stack[-1]
            self.fill(f)
            self.emit(f"elif {c}:" if k == "elif" else "else:", len(self.stack) - 1)
            f.body = 0
        elif k in ("for", "forall"):
            header = self.for_header(*s.args[0])
            self.count()
            self.emit(f"for {header}:")
            self.stack.append(_Frame(k, ln))
        elif k in ("repeat", "loop"):
            self.count()
            self.emit("while True:")
            self.stack.append(_Frame(k, ln))
        elif k == "until":
            if not self.stack or self.stack[-1].kind != "repeat":
                raise TranspileError("\\Until without an open \\Repeat", ln)
            c = self.cond(*s.args[0])
            self.emit(f"if {c}:")
            self.emit("break", len(self.stack) + 1)
            self.stack.pop()
        elif k == "def":
            header = self.def_header(s)
            self.count()
            self.emit(f"def {header}:")
            kind = "procedure" if s.cmd.lower() == "procedure" else "function"
            self.stack.append(_Frame(kind, ln))
        elif k.startswith("end:"):
            want = _CLOSES[k]
            if not self.stack:
                raise TranspileError(f"\\{s.cmd} without an open block", ln)
            f = self.stack[-1]
            if f.kind not in want:
                raise TranspileError(
                    f"\\{s.cmd} closes {_OPENERS[f.kind]} opened at line {f.line}", ln
                )
            self.fill(f)
            self.stack.pop()
        else:  # pragma: no cover - every kind in _STATEMENTS is handled above
            raise TranspileError(f"\\{s.cmd} is not supported", ln)

    def state(self, s: _Stmt) -> None:
        ln = self.line(s.text_pos if s.text.strip() else s.pos)
        toks = self.tokens(s.text, s.text_pos)
        if not toks:
            return
        for part in _split_top(toks, lambda u: u.is_op(";"), self.x.line):
            if part:
                self.simple(part, ln)

    def simple(self, toks: list[_Tok], ln: int) -> None:
        where = " ".join(_tok_text(t) for t in toks)
        if toks[0].is_word("return"):
            rest = toks[1:]
            value = _unparse(self.x.expr(rest), where, ln) if rest else ""
            self.emit(f"return {value}".rstrip())
            self.count()
            return
        if len(toks) == 1 and toks[0].is_word("break", "continue"):
            if not any(f.kind in ("for", "forall", "while", "repeat", "loop") for f in self.stack):
                raise TranspileError(f"{toks[0].value} outside a loop", ln)
            self.emit(toks[0].value.lower())
            self.count()
            return
        if toks[0].is_word("swap"):
            a, sep, b = _partition(toks[1:], lambda u: u.is_word("and", "with") or u.is_op(","))
            if sep is None or not a or not b:
                raise TranspileError(f"cannot translate {where!r} (swap X and Y)", ln)
            x, y = self.x.expr(a), self.x.expr(b)
            self.emit(_unparse(f"{x}, {y} = {y}, {x}", where, ln, "exec"))
            self.count()
            return
        parts = _split_top(toks, lambda u: u.is_cmd(*_ASSIGN_CMDS) or u.is_op(":="), self.x.line)
        aug = None
        if len(parts) == 1:
            eq = _split_top(toks, lambda u: u.is_op("=", "+=", "-="), self.x.line)
            if len(eq) == 2:
                parts = eq
                op = next(u for u in toks if u.is_op("=", "+=", "-="))
                aug = op.value if op.value != "=" else None
        if len(parts) > 1:
            if any(not p for p in parts):
                raise TranspileError(f"assignment with an empty side in {where!r}", ln)
            pieces = [self.x.expr(p) for p in parts]
            joiner = f" {aug} " if aug else " = "
            code = joiner.join(pieces)
            try:
                tree = _parse(code)
            except SyntaxError:
                raise TranspileError(f"cannot translate assignment {where!r}", ln) from None
            self.emit(ast.unparse(tree))
            self.count()
            return
        value = self.x.expr(toks)
        code = _unparse(value, where, ln)
        node = _parse(code, mode="eval").body
        if not isinstance(node, ast.Call):
            raise TranspileError(
                f"cannot translate {where!r}: a statement must assign, call or return", ln
            )
        self.emit(code)
        self.count()

    def for_header(self, text: str, pos: int) -> str:
        ln = self.line(pos)
        toks = self.tokens(text, pos)
        while toks and toks[0].is_word("each", "all"):
            toks.pop(0)
        while toks and toks[-1].is_word("do"):
            toks.pop()
        if not toks:
            raise TranspileError("empty loop header", ln)
        where = " ".join(_tok_text(t) for t in toks)
        head, to, tail = _partition(toks, lambda u: u.is_word("to", "downto"))
        if to is not None:
            var, op, start = _partition(
                head, lambda u: u.is_op("=", ":=") or u.is_cmd(*_ASSIGN_CMDS)
            )
            if op is None or not var or not start:
                raise TranspileError(f"cannot read loop header {where!r} (i = a to b)", ln)
            stop, st, step_toks = _partition(tail, lambda u: u.is_word("step", "by"))
            if not stop or (st is not None and not step_toks):
                raise TranspileError(f"cannot read loop header {where!r}", ln)
            step = self.x.expr(step_toks) if st is not None else None
            rng = _range(self.x.expr(start), self.x.expr(stop), step, to.is_word("downto"))
            target = self.x.expr(var)
            return self.check_for(f"{target} in {rng}", where, ln)
        var, op, rest = _partition(toks, lambda u: u.is_cmd("in") or u.is_word("in"))
        if op is not None:
            if not var or not rest:
                raise TranspileError(f"cannot read loop header {where!r}", ln)
            return self.check_for(f"{self.x.expr(var)} in {self.x.expr(rest)}", where, ln)
        var, op, rest = _partition(toks, lambda u: u.is_op("=", ":=") or u.is_cmd(*_ASSIGN_CMDS))
        if op is not None and any(u.is_cmd(*_DOTS) for u in rest):
            rng = self.x.set_literal(rest, op)
            return self.check_for(f"{self.x.expr(var)} in {rng}", where, ln)
        raise TranspileError(
            f"cannot read loop header {where!r} (expected i = a to b, or x \\in S)", ln
        )

    @staticmethod
    def check_for(header: str, where: str, ln: int) -> str:
        try:
            tree = _parse(f"for {header}:\n    pass")
        except SyntaxError:
            raise TranspileError(f"cannot translate loop header {where!r}", ln) from None
        return ast.unparse(tree).splitlines()[0][4:-1]

    def def_header(self, s: _Stmt) -> str:
        ln = self.line(s.pos)
        (name_text, name_pos), (args_text, args_pos) = s.args
        name_toks = _tokenize(name_text, name_pos, self.src, text_mode=True)
        if len(name_toks) != 1 or name_toks[0].kind != "name":
            raise TranspileError(f"\\{s.cmd} needs a name, got {name_text.strip()!r}", ln)
        name = _pyname(name_toks[0].value)
        params = []
        for part in _split_top(
            self.tokens(args_text, args_pos), lambda u: u.is_op(","), self.x.line
        ):
            if not part:
                continue
            if part[0].kind != "name" and not part[0].is_cmd(*_GREEK):
                raise TranspileError(f"cannot read parameter in {args_text.strip()!r}", ln)
            head, eq, default = _partition(part, lambda u: u.is_op("="))
            pname = _pyname(head[0].value) if head[0].kind == "name" else self.x.expr(head[:1])
            if eq is not None:
                pname += "=" + self.x.expr(default)
            params.append(pname)
        header = f"{name}({', '.join(params)})"
        try:
            _parse(f"def {header}:\n    pass")
        except SyntaxError:
            raise TranspileError(f"cannot translate \\{s.cmd} header {header!r}", ln) from None
        return header


def _tok_text(t: _Tok) -> str:
    return "\\" + t.value if t.kind == "cmd" else t.value


def _plain(text: str) -> str:
    """LaTeX text for a comment: no $, one line."""
    return " ".join(text.replace("$", "").split())


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------
_ENV_RE = re.compile(r"\\begin\{algorithmic\}\s*(\[[^\]]*\])?")
_END_RE = re.compile(r"\\end\{algorithmic\}")
_CAPTION_RE = re.compile(r"\\caption\{([^{}]*)\}")


def _environments(
    src: _Source, lenient: bool = False
) -> list[tuple[int, int, str, TranspileError | None]]:
    """(start, end, caption, problem) of each algorithmic body, or the whole text when there
    is none. ``problem`` is a structural error that lenient mode turns into a TODO line."""
    text = src.text
    found = list(_ENV_RE.finditer(text))
    if not found:
        return [(0, len(text), "", None)]
    envs: list[tuple[int, int, str, TranspileError | None]] = []
    for k, m in enumerate(found):
        problem = None
        e = _END_RE.search(text, m.end())
        nxt = found[k + 1] if k + 1 < len(found) else None
        if e is None or (nxt is not None and nxt.start() < e.start()):
            what = "unclosed" if e is None else "nested"
            at = m.start() if e is None else nxt.start()  # type: ignore[union-attr]
            problem = TranspileError(f"{what} \\begin{{algorithmic}}", src.line(at))
            if not lenient:
                raise problem
            stop = nxt.start() if nxt is not None else len(text)
            envs.append((m.end(), stop, "", problem))
            continue
        # the caption of the enclosing algorithm float, before or after the body
        begin = text.rfind("\\begin{algorithm}", 0, m.start())
        if begin >= 0 and text.find("\\end{algorithm}", begin, m.start()) >= 0:
            begin = -1  # that float closed before this body began
        end_float = text.find("\\end{algorithm}", e.end())
        window = text[max(begin, 0) : end_float if end_float >= 0 else e.end()]
        cap = _CAPTION_RE.search(window) if begin >= 0 else None
        envs.append((m.end(), e.start(), cap.group(1) if cap else "", problem))
    return envs


def _snake(caption: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", re.sub(r"\$[^$]*\$|\\[A-Za-z]+", " ", caption))
    name = "_".join(w.lower() for w in words) or "algorithm"
    if name[0].isdigit():
        name = "algorithm_" + name
    return _pyname(name)


def _needs_wrap(code: str) -> bool:
    tree = _parse(code)

    def visit(node: ast.AST, in_def: bool) -> bool:
        if isinstance(node, ast.Return) and not in_def:
            return True
        inside = in_def or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        return any(visit(ch, inside) for ch in ast.iter_child_nodes(node))

    return visit(tree, False)


class _FirstUse(ast.NodeVisitor):
    """Record, per name, whether its first use in evaluation order reads or binds it."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}  # name -> "load" | "store"
        self.called: set[str] = set()  # names only ever used as the callee of a call
        self.loaded_plain: set[str] = set()

    def note(self, name: str, how: str) -> None:
        self.first.setdefault(name, how)

    def visit_Name(self, node: ast.Name) -> None:
        self.note(node.id, "load" if isinstance(node.ctx, ast.Load) else "store")
        if isinstance(node.ctx, ast.Load):
            self.loaded_plain.add(node.id)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self.called.add(node.func.id)
            self.note(node.func.id, "load")
        else:
            self.visit(node.func)
        for a in node.args:
            self.visit(a)
        for kw in node.keywords:
            self.visit(kw.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for t in node.targets:
            self.visit(t)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self.note(node.target.id, "load")
        self.visit(node.target)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for st in [*node.body, *node.orelse]:
            self.visit(st)

    def _comprehension(self, node: ast.AST, elts: Sequence[ast.AST]) -> None:
        for gen in node.generators:  # type: ignore[attr-defined]
            self.visit(gen.iter)
            self.visit(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        for e in elts:
            self.visit(e)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node, [node.elt])

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node, [node.elt])

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.note(node.name, "store")

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for a in node.args.args:
            self.note(a.arg, "store")
        self.visit(node.body)


def _free_names(body: str, known: set[str]) -> list[str]:
    """Names the code reads before it binds them: the inputs of a wrapped algorithm.

    Names only ever called (``Helper(x)``) are functions the caller provides, not inputs.
    """
    v = _FirstUse()
    v.visit(_parse(body))
    out = []
    for name, how in v.first.items():
        if how != "load" or name in known or name == "math" or hasattr(builtins, name):
            continue
        if name in v.called and name not in v.loaded_plain:
            continue
        out.append(name)
    return out


def _render(lines: Sequence[_Line]) -> str:
    """Indent the lines; two blank lines around each module-level def (PEP 8)."""
    out: list[str] = []
    in_def = False
    for ln in lines:
        text = "    " * ln.depth + ln.code
        starts_def = ln.depth == 0 and ln.code.startswith("def ")
        leaves_def = ln.depth == 0 and in_def and not starts_def
        if ln.depth == 0:
            in_def = starts_def
        if (starts_def or leaves_def) and out:
            # keep the comment lines just above a def attached to it
            j = len(out)
            while starts_def and j > 0 and out[j - 1].startswith("#"):
                j -= 1
            if j > 0 and out[j - 1] != "":
                out[j:j] = ["", ""]
        out.append(text)
    return "\n".join(out)


def _assemble(block: _Block, caption: str, used_names: set[str]) -> str:
    code = _render(block.lines)
    if not block.lines or not _needs_wrap(code):
        return code
    defs = [ln for ln in block.lines if ln.top_def]
    rest = [ln for ln in block.lines if not ln.top_def]
    def_names = {m.group(1) for ln in defs if (m := re.match(r"def (\w+)", ln.code))}
    body = _render([_Line(ln.depth, ln.code, False) for ln in rest])
    params = _free_names(body, def_names | {"_untranslated"})
    name = _snake(caption)
    base, k = name, 2
    while name in used_names or name in def_names:
        name, k = f"{base}_{k}", k + 1
    used_names.add(name)
    wrapped = [*defs, _Line(0, f"def {name}({', '.join(params)}):", True)]
    wrapped += [_Line(ln.depth + 1, ln.code, True) for ln in rest]
    return _render(wrapped)


_TODO_HELPER = """def _untranslated(line):
    raise NotImplementedError(f"LaTeX line {line} was not translated (see the TODO above it)")"""


def transpile(latex: str, *, lenient: bool = False) -> str:
    """Translate LaTeX pseudo-code to Python source.

    Args:
        latex: a document or fragment holding one or more ``algorithmic`` environments; with
            none, the whole text is read as the body of one.
        lenient: turn each untranslatable construct into a ``# TODO:`` line that keeps the
            LaTeX source (followed by a call that raises ``NotImplementedError`` when run)
            instead of raising.

    Returns:
        Python source that passes :func:`ast.parse`. The input is never executed.

    Raises:
        TypeError: ``latex`` is not a string.
        TranspileError: (a ``ValueError``) a construct that cannot be translated, with its
            LaTeX line number in ``.line`` and in the message.
    """
    if not isinstance(latex, str):
        raise TypeError(f"transpile() expects LaTeX source as str, got {type(latex).__name__}")
    src = _Source(latex)
    chunks: list[str] = []
    uses_todo = False
    used: set[str] = set()
    for start, end, caption, problem in _environments(src, lenient):
        tr = _Translator(src, lenient)
        if problem is not None:
            tr.emit(f"# TODO: line {problem.line}: {problem.reason}")
        try:
            stmts = _scan(src, start, end)
        except TranspileError as e:
            if not lenient:
                raise
            tr.emit(f"# TODO: could not read the algorithm (line {e.line}: {e.reason})")
            tr.emit(tr.todo_call(e.line))
            stmts = []
        tr.run(stmts)
        uses_todo |= tr.block.uses_todo
        chunks.append(_assemble(tr.block, caption, used))
    body = "\n\n\n".join(c for c in chunks if c.strip())
    head = [
        "# Generated by seedbed.devtools.paper_to_code from LaTeX pseudo-code; review before use."
    ]
    if re.search(r"\bmath\.", body):
        head.append("import math")
    if uses_todo:
        head += ["", "", _TODO_HELPER]
    out = "\n".join(head) + ("\n\n\n" if body else "\n") + body + ("\n" if body else "")
    _parse(out)  # every statement was checked on its own; the module must parse too
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m seedbed.devtools.paper_to_code in.tex [-o out.py] [--lenient]``.

    Exit codes: 0 written, 1 a construct could not be translated, 2 bad input.
    """
    p = argparse.ArgumentParser(
        prog="python -m seedbed.devtools.paper_to_code",
        description="Transpile LaTeX pseudo-code (algorithmicx / algorithmic) to Python.",
    )
    p.add_argument("input", type=Path, help="LaTeX file ('-' reads stdin)")
    p.add_argument("-o", "--output", type=Path, help="Python file to write (default: stdout)")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="write a '# TODO:' line for each untranslatable construct instead of failing",
    )
    args = p.parse_args(argv)
    try:
        latex = sys.stdin.read() if str(args.input) == "-" else args.input.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"paper_to_code: error: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    try:
        code = transpile(latex, lenient=args.lenient)
    except TranspileError as exc:
        print(f"{args.input}:{exc.line}: error: {exc.reason}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(code)
    else:
        try:
            args.output.write_text(code, encoding="utf-8")
        except OSError as exc:
            print(f"paper_to_code: error: cannot write {args.output}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
