"""Derived telemetry parameters: safe expressions over a packet's parameters, on numpy batches.

A derived parameter is a formula over other parameters of the same packet, e.g.
``sqrt(position_x**2 + position_y**2 + position_z**2) - 1737.4``. The text is parsed with
:mod:`ast` and only a small whitelist is accepted (numbers, parameter names, the constants
``pi``, ``e`` and ``c``, arithmetic, comparisons and a fixed set of math functions). The
tree is compiled once into a tree of closures; nothing is ever passed to ``eval``, ``exec``
or ``compile``. Evaluation works on whole arrays and never raises for bad arithmetic:
division by zero gives ``inf``, invalid math (``sqrt(-1)``, ``log(0)``) gives ``nan``/``-inf``.

If a telemetry parameter is named like a constant (``c``, ``e``, ``pi``), the parameter wins.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from control_center.errors import IslsError

__all__ = ["CONSTANTS", "FUNCTIONS", "Expression", "ExpressionError"]

FloatArray = npt.NDArray[np.float64]
_Fn = Callable[[Mapping[str, FloatArray]], FloatArray]

#: Named constants usable in expressions; ``c`` is the speed of light in km/s.
CONSTANTS: Mapping[str, float] = {"pi": math.pi, "e": math.e, "c": 299792.458}


def _where(cond: FloatArray, a: FloatArray, b: FloatArray) -> Any:
    return np.where(cond != 0.0, a, b)


#: Callable functions: name -> (arity, numpy implementation).
FUNCTIONS: Mapping[str, tuple[int, Callable[..., Any]]] = {
    "sqrt": (1, np.sqrt),
    "abs": (1, np.abs),
    "exp": (1, np.exp),
    "log": (1, np.log),
    "log10": (1, np.log10),
    "sin": (1, np.sin),
    "cos": (1, np.cos),
    "tan": (1, np.tan),
    "asin": (1, np.arcsin),
    "acos": (1, np.arccos),
    "atan": (1, np.arctan),
    "atan2": (2, np.arctan2),
    "hypot": (2, np.hypot),
    "degrees": (1, np.degrees),
    "radians": (1, np.radians),
    "min": (2, np.minimum),
    "max": (2, np.maximum),
    "where": (3, _where),
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
    ast.Mod: np.mod,
}
_OP_SYMBOLS: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.Invert: "~",
    ast.Not: "not",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_TOKEN = re.compile(
    r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|\w+|\*\*|//|<<|>>|[<>=!]=|'[^']*'?|\"[^\"]*\"?|\S"
)
_DUNDER = re.compile(r"\w*__\w*")


class ExpressionError(IslsError, ValueError):
    """A derived parameter's expression is invalid (or cannot be evaluated on its inputs)."""

    def __init__(self, parameter: str, token: str, reason: str) -> None:
        self.parameter = parameter
        self.token = token
        self.reason = reason
        super().__init__(f"derived parameter {parameter!r}: {reason}: {token!r}")


def _f64(value: Any) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


def _syntax_token(text: str, err: SyntaxError) -> str:
    """The token at (or just before) the position a SyntaxError points to."""
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    if not tokens:
        return text
    if not err.lineno or not err.offset or err.offset <= 0:
        return tokens[-1][2]
    lines = text.splitlines(keepends=True)
    pos = sum(len(line) for line in lines[: err.lineno - 1]) + err.offset - 1
    for start, end, tok in tokens:
        if start <= pos < end:
            return tok
    before = [tok for start, _, tok in tokens if start < pos]
    return before[-1] if before else tokens[0][2]


class _Compiler:
    def __init__(self, text: str, parameter: str, known: frozenset[str]) -> None:
        self.text = text
        self.parameter = parameter
        self.known = known
        self.names: set[str] = set()

    def fail(self, node: ast.AST | str, reason: str) -> ExpressionError:
        if isinstance(node, str):
            token = node
        else:
            token = ast.get_source_segment(self.text, node) or type(node).__name__
        return ExpressionError(self.parameter, token, reason)

    def compile(self, node: ast.expr) -> _Fn:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(node, "only int/float literals are allowed")
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise self.fail(node, "numeric literal out of range")
            const = _f64(number)
            return lambda _v: const
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            binop = _BINARY.get(type(node.op))
            if binop is None:
                raise self.fail(_OP_SYMBOLS.get(type(node.op), "?"), "operator not allowed")
            left, right = self.compile(node.left), self.compile(node.right)
            return lambda v: _f64(binop(left(v), right(v)))
        if isinstance(node, ast.UnaryOp):
            operand = self.compile_unary_operand(node)
            if isinstance(node.op, ast.USub):
                return lambda v: _f64(np.negative(operand(v)))
            return operand
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise self.fail(node, f"{type(node).__name__.lower()} not allowed")

    def compile_unary_operand(self, node: ast.UnaryOp) -> _Fn:
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise self.fail(_OP_SYMBOLS.get(type(node.op), "?"), "operator not allowed")
        return self.compile(node.operand)

    def _name(self, node: ast.Name) -> _Fn:
        name = node.id
        if name in self.known:
            self.names.add(name)
            return lambda v: v[name]
        if name in CONSTANTS:
            const = _f64(CONSTANTS[name])
            return lambda _v: const
        if name in FUNCTIONS:
            raise self.fail(node, "function used without a call")
        raise self.fail(node, "unknown parameter")

    def _compare(self, node: ast.Compare) -> _Fn:
        ops: list[Callable[[Any, Any], Any]] = []
        for op in node.ops:
            cmp = _COMPARE.get(type(op))
            if cmp is None:
                raise self.fail(_OP_SYMBOLS.get(type(op), "?"), "comparison not allowed")
            ops.append(cmp)
        operands = [self.compile(node.left), *(self.compile(c) for c in node.comparators)]

        def run(v: Mapping[str, FloatArray]) -> FloatArray:
            # Chained comparisons mean what they mean in Python: a < b < c is a < b and b < c.
            values = [operand(v) for operand in operands]
            result = ops[0](values[0], values[1])
            for i, cmp in enumerate(ops[1:], start=1):
                result = np.logical_and(result, cmp(values[i], values[i + 1]))
            return _f64(result)

        return run

    def _call(self, node: ast.Call) -> _Fn:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node.func, "only plain function calls are allowed")
        name = node.func.id
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.fail(node.func, "unknown function")
        if node.keywords:
            raise self.fail(node.keywords[0], "keyword arguments not allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(arg, "starred arguments not allowed")
        arity, func = spec
        if len(node.args) != arity:
            plural = "s" if arity != 1 else ""
            raise self.fail(node, f"{name}() takes {arity} argument{plural}, not {len(node.args)}")
        args = [self.compile(arg) for arg in node.args]
        return lambda v: _f64(func(*(arg(v) for arg in args)))


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed, compiled derived-parameter expression."""

    text: str
    names: frozenset[str]
    parameter: str = ""
    _fn: _Fn = field(default=lambda _v: _f64(np.nan), repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, *, parameter: str, known: Iterable[str]) -> Expression:
        """Parse and compile ``text``; raise :class:`ExpressionError` if it is not allowed."""
        if not text.strip():
            raise ExpressionError(parameter, text, "empty expression")
        dunder = _DUNDER.search(text)
        if dunder is not None:
            raise ExpressionError(parameter, dunder.group(), "names with '__' are not allowed")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as err:
            reason = f"syntax error ({err.msg})"
            raise ExpressionError(parameter, _syntax_token(text.strip(), err), reason) from None
        except (ValueError, RecursionError, MemoryError) as err:
            raise ExpressionError(parameter, text[:40], f"cannot parse ({err})") from None
        compiler = _Compiler(text.strip(), parameter, frozenset(known))
        try:
            fn = compiler.compile(tree.body)
        except RecursionError:
            raise ExpressionError(parameter, text[:40], "expression nested too deeply") from None
        return cls(text=text, names=frozenset(compiler.names), parameter=parameter, _fn=fn)

    def evaluate(self, values: Mapping[str, npt.NDArray[Any]]) -> FloatArray:
        """Evaluate on a batch: a float64 array as long as the inputs (1 element if none)."""
        inputs: dict[str, FloatArray] = {}
        length: int | None = None
        for name in sorted(self.names):
            if name not in values:
                raise ExpressionError(self.parameter, name, "missing input")
            array = np.atleast_1d(np.asarray(values[name], dtype=np.float64))
            if array.ndim != 1 or (length is not None and array.shape[0] != length):
                raise ExpressionError(self.parameter, name, "inputs must be 1-D of equal length")
            length = array.shape[0]
            inputs[name] = array
        if length is None:
            first = next(iter(values.values()), None)
            length = 1 if first is None else int(np.atleast_1d(np.asarray(first)).shape[0])
        with np.errstate(all="ignore"):
            result = self._fn(inputs)
        return np.array(np.broadcast_to(result, (length,)), dtype=np.float64)
