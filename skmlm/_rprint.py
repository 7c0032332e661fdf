"""R's number printing, for summaries that read exactly as lme4's.

R's ``format(x, digits)`` gives a whole vector one layout: as few significant digits as
show every element to ``digits`` significant digits, one number of decimals, fixed notation
unless scientific is narrower. ``printCoefmat``, ``format.pval``, ``abbreviate``, ``cat(...,
fill = TRUE)`` and ``deparse``'s line breaks build on it. Written from R's documented
behaviour and checked against R's printed output (tests/golden/summaries/).
"""

import math
import textwrap

import numpy as np

WIDTH = 80  # getOption("width")
DOUBLE_EPS = np.finfo(float).eps


def _significance(x, digits):
    """(negative, exponent, significant digits, rounding widens) of ``x`` shown to
    ``digits`` significant digits, as R's scientific(): 9996 to 3 digits is 1.00e+04 in
    scientific notation but stays 4 digits wide in fixed."""
    if x == 0:
        return False, 0, 1, False
    r = abs(x)
    mantissa, exponent = f"{r:.{digits - 1}e}".split("e")
    kpower = int(exponent)
    nsig = len(mantissa.replace(".", "").rstrip("0")) or 1
    fuzz = 0.5 / 10.0 ** min(max(digits - kpower, 0), 22)
    widens = 0 < kpower <= 22 and r < 10.0**kpower - fuzz  # rounded up to the next power of ten
    return x < 0, kpower, nsig, widens


def format_real(values, digits=7, nsmall=0):
    """R's ``format(values, digits = digits, nsmall = nsmall)``: strings of one width."""
    values = [float(v) for v in values]
    finite = [v for v in values if math.isfinite(v)]
    scientific, decimals = False, 0
    if finite:
        parts = [_significance(v, digits) for v in finite]
        neg = any(p[0] for p in parts)
        lefts = [p[1] + 1 - p[3] for p in parts]
        rgt = max(max(p[2] - left for p, left in zip(parts, lefts)), 0)
        mxsl = max(int(p[0]) + max(left, 1) for p, left in zip(parts, lefts))
        if max(lefts) < 0:
            mxsl = 1 + neg
        fixed_width = mxsl + rgt + (rgt != 0)
        big_exponent = max(lefts) > 100 or min(lefts) <= -99
        d = max(p[2] for p in parts) - 1
        sci_width = neg + (d > 0) + d + 4 + (2 if big_exponent else 1)
        scientific = fixed_width > sci_width
        decimals = d if scientific else max(rgt, nsmall)
    out = []
    for v in values:
        if math.isnan(v):
            out.append("NA")
        elif math.isinf(v):
            out.append("Inf" if v > 0 else "-Inf")
        elif scientific:
            out.append(f"{v:.{decimals}e}")
        else:
            out.append(f"{v:.{decimals}f}")
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def round_half_even(x, digits):
    """R's ``round(x, digits)`` (IEC 60559: halves to even, as numpy's)."""
    return np.round(np.asarray(x, dtype=float), digits)


def format_pval(pv, digits=3, eps=DOUBLE_EPS):
    """R's ``format.pval``: fixed below 1e-4 only when that is short, else scientific;
    below ``eps`` as ``<2e-16``."""
    pv = np.asarray(pv, dtype=float)
    out = np.array(["NA"] * len(pv), dtype=object)
    ok = ~np.isnan(pv)
    tiny = ok & (pv < eps)
    rest = ok & ~tiny
    if rest.any():
        expo = np.floor(np.log10(np.where(pv > 0, pv, 1e-50)))
        fixp = rest & ((expo >= -3) | ((expo == -4) & (digits > 1)))
        for sel in (fixp, rest & ~fixp):
            if sel.any():
                out[sel] = format_real(pv[sel], digits)
    if tiny.any():
        d = max(1, digits - 2)
        if rest.any():
            nc = max(len(s) for s in out[rest])
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if d == 1 and nc <= 6 else " "
        else:
            sep = "" if d == 1 else " "
        out[tiny] = "<" + sep + format_real([eps], d)[0]
    return list(out)


def signif_stars(p):
    """R's significance symbol of a p-value (``symnum`` with the usual cutpoints)."""
    if not np.isfinite(p):
        return ""
    return "***" if p <= 0.001 else "**" if p <= 0.01 else "*" if p <= 0.05 else "." if p <= 0.1 else " "


SIGNIF_LEGEND = "Signif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"


def print_matrix(cells, row_names, col_names, right=True):
    """R's print of a character matrix (quote = FALSE): row names left-aligned, each
    column as wide as its widest entry or name, aligned right or left."""
    rw = max([len(r) for r in row_names] + [0])
    widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(col_names)]
    align = (lambda s, w: s.rjust(w)) if right else (lambda s, w: s.ljust(w))
    lines = [" ".join([" " * rw] + [align(c, w) for c, w in zip(col_names, widths)])]
    for name, row in zip(row_names, cells):
        lines.append(" ".join([name.ljust(rw)] + [align(s, w) for s, w in zip(row, widths)]))
    return lines


def print_named(values, names):
    """R's print of a named vector of strings: every column as wide as the widest."""
    w = max(len(s) for s in list(values) + list(names))
    return [" ".join(n.rjust(w) for n in names) + " ", " ".join(v.rjust(w) for v in values) + " "]


def coef_matrix(table, digits=4, stars=True):
    """R's ``printCoefmat(table, digits)`` as lines: estimates and standard errors (and
    any columns before the test statistic) on one scale of decimals, the test statistic
    rounded to ``digits - 1``, ``Pr(...)`` by :func:`format_pval`, stars and their legend
    when some p-value is below 0.1."""
    names = list(table.columns)
    x = table.to_numpy(dtype=float)
    has_p = len(names) >= 4 and names[-1][:3] in ("Pr(", "p-v")
    nc = len(names)
    k = nc - has_p - 1
    dig_tst = max(1, min(5, digits - 1))
    cells = np.empty(x.shape, dtype=object)
    cs = x[:, :k]
    acs = np.abs(cs[np.isfinite(cs)])
    acs = acs[acs != 0]
    digmin = 1 + (np.floor(np.log10([acs.min(), acs.max()])) if len(acs) else np.zeros(2))
    rounded = round_half_even(cs, int(max(1, digits - digmin.min())))
    cells[:, :k] = np.array(format_real(rounded.ravel(order="F"), digits), dtype=object).reshape(cs.shape, order="F")
    cells[:, k] = format_real(round_half_even(x[:, k], dig_tst), digits)
    for j in range(k):  # a value that is not 0 but prints as 0 (or the reverse): fewer digits
        for i in range(x.shape[0]):
            if np.isfinite(x[i, j]) and (x[i, j] == 0) != (float(cells[i, j]) == 0):
                cells[i, j] = format_real([x[i, j]], max(1, digits - 1))[0]
    legend = []
    if has_p:
        p = x[:, -1]
        cells[:, -1] = format_pval(p, dig_tst)
        if stars and np.any(p[np.isfinite(p)] < 0.1):
            marks = [signif_stars(v) for v in p]
            w = max(len(s) for s in marks)
            cells = np.column_stack([cells, [s.ljust(w) for s in marks]])
            names = names + [""]
            legend = ["---", SIGNIF_LEGEND]
    return print_matrix(cells.tolist(), list(table.index), names) + legend


def abbreviate(name, minlength):
    """R's ``abbreviate(name, minlength)``: drop lower-case vowels from the end, then
    lower-case letters, then any letter, never a word's first (``period2`` -> ``perid2``)."""
    chars = list(name.strip())

    def done():
        return len(chars) <= minlength

    def first_of_word(i):
        return chars[i - 1] == " "

    def last_of_word(i):
        return chars[i - 1] != " " and (i + 1 == len(chars) or chars[i + 1] == " ")

    passes = [
        lambda i: chars[i] in "aeiou" and last_of_word(i),
        lambda i: chars[i] in "aeiou" and not first_of_word(i),
        lambda i: chars[i].islower() and last_of_word(i),
        lambda i: chars[i].islower() and not first_of_word(i),
        lambda i: not first_of_word(i) and chars[i] != " ",
    ]
    for drop in passes:
        if done():
            break
        for i in range(len(chars) - 1, 0, -1):
            if i < len(chars) and drop(i):
                del chars[i]
            if done():
                break
    if len(chars) > minlength:
        chars = [c for c in chars if c != " "]
    return "".join(chars)


def cat_fill(objects, sep=" ", width=WIDTH):
    """R's ``cat(..., sep, fill = TRUE)``: the strings of each object in turn, a new line
    where the next would pass ``width``."""
    text, used, first = "", 0, True
    for obj in objects:
        for s in obj:
            if not first:
                text += sep
                if used + len(s) + len(sep) > width:
                    text, used = text + "\n", 0
            text += s
            used += len(s) + len(sep)
            first = False
    return text.split("\n")


def method_title(title, cls, width=WIDTH):
    """lme4's first line, ``<title> ['<class>']``, wrapped as lme4 wraps a long one."""
    if len(title) + 5 + len(cls) > width:
        wrapped = textwrap.wrap(title, width - 3, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
        return cat_fill([wrapped, [" ["], [cls], ["]"]], sep="", width=width)
    return [f"{title} ['{cls}']"]


# -- deparse: an R formula over lines of at most ~60 characters ---------------------------
_BINARY = {"~": 1, "||": 2, "|": 2, "+": 3, "-": 3, "*": 4}  # spaced operators and precedence
_TIGHT = {"/": 4, ":": 5, "^": 6}  # printed without spaces
_CUTOFF = 60


def _tokens(text):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("||", i):
            out.append("||")
            i += 2
        elif c in "~|+-*/:^()":
            out.append(c)
            i += 1
        else:  # a name, a number or a call with its parentheses, kept as written
            j, depth = i, 0
            while j < len(text) and (depth > 0 or not (text[j].isspace() or text[j] in "~|+-*/:^)")):
                if text[j] == "(":
                    if j == i:
                        break
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                j += 1
            if j == i:
                raise ValueError(text)
            out.append(text[i:j])
            i = j
    return out


def _parse(tokens, pos=0, min_prec=0):
    """Precedence climbing into (op, left, right) / ("()", inner) / atom; left-associative
    except ``^``."""
    tok = tokens[pos]
    if tok == "(":
        inner, pos = _parse(tokens, pos + 1)
        left, pos = ("()", inner), pos + 1
    elif tok in ("-", "+", "~"):
        operand, pos = _parse(tokens, pos + 1, 3)
        left = ("unary", tok, operand)
    else:
        left, pos = tok, pos + 1
    while pos < len(tokens):
        op = tokens[pos]
        prec = _BINARY.get(op, _TIGHT.get(op))
        if prec is None or prec < min_prec or (prec == min_prec and op != "^"):
            break
        right, pos = _parse(tokens, pos + 1, prec + (op != "^"))
        left = (op, left, right)
    return left, pos


class _Deparser:
    def __init__(self):
        self.lines, self.line, self.indent = [], "", 0

    def write(self, s):
        self.line += s

    def newline(self):
        self.lines.append(self.line)
        self.line = "    " * min(self.indent, 4) + "  " * max(self.indent - 4, 0)

    def node(self, n):
        if isinstance(n, str):
            self.write(n)
        elif n[0] == "()":
            self.write("(")
            self.node(n[1])
            self.write(")")
        elif n[0] == "unary":
            self.write(n[1])
            self.node(n[2])
        elif n[0] in _TIGHT:
            self.node(n[1])
            self.write(n[0])
            self.node(n[2])
        else:
            self.node(n[1])
            self.write(f" {n[0]} ")
            broke = len(self.line) > _CUTOFF
            if broke:
                self.indent += 1
                self.newline()
            self.node(n[2])
            if broke:
                self.indent -= 1


def deparse_formula(text):
    """R's ``deparse`` of a formula: its lines as R breaks them (after a spaced binary
    operator once a line passes 60 characters); the text as given if it does not parse."""
    try:
        tokens = _tokens(text)
        tree, end = _parse(tokens)
        if end != len(tokens):
            return [text]
    except (ValueError, IndexError):
        return [text]
    d = _Deparser()
    d.node(tree)
    return d.lines + [d.line]
