"""lme4's formula language, split into what skmlm fits: a response, a fixed part, offsets
and random-effect terms in the bar syntax.

The fixed part and the left side of each bar stay formula text for formulaic; this
module only finds the bars and expands them as lme4 (reformulas' ``findbars``,
``expandDoubleVerts``, ``expandSlash``) does:

- ``(x || g)`` is ``(1 | g) + (0 + x | g)``: one uncorrelated term per column;
- ``(1 | a/b)`` is ``(1 | a) + (1 | a:b)``, and ``a/b/c`` is ``a + a:b + a:b:c``;
- ``a:b`` as a grouping factor is the interaction of the columns ``a`` and ``b``.

A mistake raises :class:`FormulaError`, which shows the formula with a caret under the
place where it is wrong.
"""

import re
from dataclasses import dataclass, field


class FormulaError(ValueError):
    """A formula that cannot be read: the message points at the place with a caret."""

    def __init__(self, formula, position, problem):
        self.formula, self.position, self.problem = formula, position, problem
        caret = " " * (position + 4) + "^"
        super().__init__(f"{problem} (at character {position + 1} of the formula):\n    {formula}\n{caret}")


@dataclass
class RandomTerm:
    """One bar ``(lhs | group)``: its left side (formula text), its grouping factor as the
    columns whose interaction it is, and whether its columns are uncorrelated (``||``)."""

    lhs: str
    group: tuple
    diagonal: bool = False

    @property
    def group_name(self):
        """lme4's name of the grouping factor, e.g. ``cntry`` or ``cask:batch``."""
        return ":".join(self.group)


@dataclass
class ParsedFormula:
    """A formula split into its parts (see the module docstring)."""

    text: str
    response: str  # "" for a one-sided formula
    fixed: str  # formulaic text of the fixed part, offsets and bars removed
    offsets: list = field(default_factory=list)  # the expressions inside offset(...)
    random: list = field(default_factory=list)  # RandomTerm, bars expanded

    @property
    def cbind(self):
        """``(successes, failures)`` expressions of a ``cbind(s, f)`` response, else None."""
        m = re.fullmatch(r"\s*cbind\s*\((.*)\)\s*", self.response, flags=re.S)
        if m is None:
            return None
        parts = _split_top(m.group(1), ",")
        if len(parts) != 2 or not all(p.strip() for _, p in parts):
            start = self.text.index("cbind")
            raise FormulaError(self.text, start, "cbind(...) takes two expressions: cbind(successes, failures)")
        return parts[0][1].strip(), parts[1][1].strip()


def _depths(text, formula, offset):
    """Parenthesis depth before each character; an error at an unbalanced parenthesis."""
    depth, out, opened = 0, [], []
    for i, ch in enumerate(text):
        out.append(depth)
        if ch == "(":
            depth += 1
            opened.append(i)
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(formula, offset + i, "this ')' closes no '('")
            opened.pop()
    if depth:
        raise FormulaError(formula, offset + opened[-1], "this '(' is never closed")
    return out


def _split_top(text, sep, formula=None, offset=0):
    """``[(start, piece)]``: ``text`` cut at ``sep`` outside parentheses."""
    depth = _depths(text, formula if formula is not None else text, offset)
    pieces, start = [], 0
    for i, ch in enumerate(text):
        if ch == sep and depth[i] == 0:
            pieces.append((start, text[start:i]))
            start = i + 1
    pieces.append((start, text[start:]))
    return pieces


def _top_terms(text, formula, offset):
    """``[(start, sign, piece)]``: ``text`` cut at ``+`` and ``-`` outside parentheses (a
    ``-`` keeps its sign, for ``- 1``). Operators inside a term (``*``, ``:``) stay."""
    depth = _depths(text, formula, offset)
    out, start, sign = [], 0, "+"
    for i, ch in enumerate(text):
        if ch in "+-" and depth[i] == 0:
            # a '-' right after an operator or at the start is a sign, not a term break
            before = text[:i].rstrip()
            if ch == "-" and (not before or before[-1] in "+-*:/(~^"):
                continue
            out.append((start, sign, text[start:i]))
            start, sign = i + 1, ch
    out.append((start, sign, text[start:]))
    return out


def _bar(piece):
    """``(lhs, rhs, double)`` when the parenthesised ``piece`` is a bar term, else None."""
    inner = piece.strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        return None
    body = inner[1:-1]
    depth = 0
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:  # "(a) + (b)": not one parenthesised term
                return None
        elif ch == "|" and depth == 0:
            double = body[i + 1 : i + 2] == "|"
            return body[:i], body[i + 2 if double else i + 1 :], double, i
    return None


_NAME = r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`"


def _grouping_factors(rhs, formula, at):
    """The grouping factors of a bar's right side: ``g``, ``a:b``, ``a/b`` (expanded)."""
    text = rhs.strip()
    if not text:
        raise FormulaError(formula, at, "a random-effect term needs a grouping factor after '|', e.g. (1 | g)")
    nested = [p.strip() for p in text.split("/")]
    factors = []
    for k, part in enumerate(nested):
        names = [n.strip() for n in part.split(":")]
        for n in names:
            if not re.fullmatch(_NAME, n):
                where = at + rhs.index(n) if n and n in rhs else at
                raise FormulaError(
                    formula, where,
                    f"the grouping factor {n!r} is not a column name: after '|' come columns, joined by ':' "
                    "(interaction) or '/' (nesting), e.g. (1 | school/class)",
                )
        factors.append(tuple(n.strip("`") for n in names))
    # a/b/c -> a, b:a, c:b:a (lme4's expandSlash, which names the inner factor first)
    out, prefix = [], ()
    for f in factors:
        prefix = f + prefix
        out.append(prefix)
    return out


def _expand_double(lhs):
    """``(x + z || g)``: the left side's terms, each its own uncorrelated bar; the intercept
    first unless the left side removes it (``0 +`` or ``- 1``), as lme4's expandDoubleVerts."""
    terms = [p.strip() for _, sign, p in _top_terms(lhs, lhs, 0) if sign == "+"]
    removed = [p.strip() for _, sign, p in _top_terms(lhs, lhs, 0) if sign == "-"]
    intercept = not ({"0"} & set(terms) or {"1"} & set(removed))
    out = ["1"] if intercept else []
    out += ["0 + " + t for t in terms if t not in ("0", "1", "")]
    return out


def parse_formula(formula):
    """Split an lme4 formula into a :class:`ParsedFormula` (see the module docstring)."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as 'y ~ x + (1 | g)'; got {type(formula).__name__}")
    text = formula
    _depths(text, text, 0)
    tildes = [i for i, ch in enumerate(text) if ch == "~"]
    if not tildes:
        raise FormulaError(text, len(text), "a formula needs '~' between the response and the predictors")
    if len(tildes) > 1:
        raise FormulaError(text, tildes[1], "a formula has one '~'")
    cut = tildes[0]
    response, rhs = text[:cut].strip(), text[cut + 1 :]
    if not rhs.strip():
        raise FormulaError(text, len(text), "nothing after '~': give the predictors, or 1 for an intercept alone")
    fixed, offsets, random = [], [], []
    for start, sign, piece in _top_terms(rhs, text, cut + 1):
        at = cut + 1 + start + (len(piece) - len(piece.lstrip()))
        body = piece.strip()
        if not body:
            raise FormulaError(text, at, f"a term is missing around this '{sign}'" if start else "a term is missing")
        bar = _bar(body)
        if bar is not None:
            if sign == "-":
                raise FormulaError(text, at, "a random-effect term cannot be subtracted")
            lhs, grp, double, bar_at = bar
            if not lhs.strip():
                raise FormulaError(text, at + 1, "a random-effect term needs a left side before '|', e.g. (1 | g)")
            groups = _grouping_factors(grp, text, at + 1 + bar_at + (2 if double else 1))
            parts = [_r_to_formulaic(p) for p in (_expand_double(lhs) if double else [lhs.strip()])]
            for g in groups:
                random += [RandomTerm(p, g, diagonal=double) for p in parts]
            continue
        if "|" in body:
            raise FormulaError(
                text, at + body.index("|"),
                "a '|' outside a random-effect term: write random effects in parentheses, e.g. (1 + x | g)",
            )
        m = re.fullmatch(r"offset\s*\((.*)\)", body, flags=re.S)
        if m is not None:
            if sign == "-":
                raise FormulaError(text, at, "an offset cannot be subtracted: write offset(-x)")
            offsets.append(m.group(1).strip())
            continue
        fixed.append(f"{sign} {_r_to_formulaic(body)}" if fixed or sign == "-" else _r_to_formulaic(body))
    fixed_text = " ".join(fixed) if fixed else "1"
    if fixed_text.startswith("-"):
        fixed_text = "1 " + fixed_text
    return ParsedFormula(text, response, fixed_text, offsets, random)


def _r_to_formulaic(term):
    """R's ``^`` inside each ``I(...)`` of ``term`` is a power; Python (formulaic) writes
    ``**``. Outside ``I()``, ``^`` is left to formulaic (R's interaction power)."""
    out, i = [], 0
    for m in re.finditer(r"\bI\(", term):
        if m.start() < i:  # an I() inside one already translated
            continue
        depth, j = 1, m.end()
        while j < len(term) and depth:
            depth += {"(": 1, ")": -1}.get(term[j], 0)
            j += 1
        out += [term[i : m.end()], term[m.end() : j].replace("^", "**")]
        i = j
    return "".join(out) + term[i:]
