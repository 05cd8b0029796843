"""The configuration reference: every key of the app's composed config (`mnist-sweep --cfg job`)
and of `hydra.sweeper`, with its dotted path, type, default and meaning.

The meanings are the attribute docstrings of the typed schemas (the string right after a
dataclass field), so a key documents itself where it is declared. The docs site renders
`markdown()` at build time (docs/hooks.py); `missing()` names every key of the composed configs
that has no row, or a row without a meaning (tests/test_docs.py).

    python -m mnist_sweep.config.reference      # the page's tables, on stdout
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper import config as sweeper
from omegaconf import OmegaConf

from mnist_sweep.config import registry, schema

SWEEPER = "hydra.sweeper."


@dataclasses.dataclass(frozen=True)
class Row:
    path: str  # dotted; `[]` stands for any index of a list of typed entries
    type: str
    default: Any
    meaning: str
    opaque: bool  # a dict, a list of values or `any`: the keys inside it are the user's


def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring, whitespace folded; a subclass's own wins over its
    base's."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def rows(cls: type, prefix: str, values: Mapping[str, Any] | None = None) -> Iterator[Row]:
    """The rows of a schema's fields, nested nodes and typed list entries walked into. `values`:
    the composed config's (what the user gets); else the dataclass defaults."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        hint, path = hints[f.name], prefix + f.name
        value = values[f.name] if values is not None and f.name in values else _default(f)
        entry = _entry_schema(hint)
        if dataclasses.is_dataclass(hint):
            yield Row(path, "node", "", docs.get(f.name, ""), opaque=False)
            yield from rows(hint, path + ".", value if isinstance(value, Mapping) else None)
        elif entry is not None:
            yield Row(path, _type(hint), value, docs.get(f.name, ""), opaque=False)
            yield from rows(entry, path + "[].")
        else:
            yield Row(path, _type(hint), value, docs.get(f.name, ""), opaque=_opaque(hint))


def sections() -> list[tuple[str, str, list[Row]]]:
    """(title, intro, rows) of the reference page, in the order it shows them."""
    job = OmegaConf.to_container(registry.compose(), resolve=False)
    out = [("Top-level keys", "Keys of `conf/config.yaml` outside the groups.",
            list(rows(schema.RunConfig, "", job)))]
    for group, cls in schema.SCHEMAS.items():
        options = ", ".join(f"`{o}`" for o in _options(group))
        out.append((f"`{group}`", f"Config group `{group}=` ({options}); defaults as composed "
                    "by `mnist-sweep --cfg job`.", list(rows(cls, f"{group}.", job[group]))))
    mnist = OmegaConf.to_container(OmegaConf.load(
        resources.files(registry.CONF_PACKAGE) / "hydra" / "sweeper" / "mnist.yaml"))
    sets = ", ".join(f"`{k}: {_show(v)}`" for k, v in _flat(mnist).items() if k != "defaults")
    out.append(("`hydra.sweeper`", "The `optuna_mlflow` sweeper's keys with its own defaults "
                f"(`hydra/sweeper=optuna_mlflow`). `hydra/sweeper=mnist`, which every ready-made "
                f"sweep uses, sets {sets}.",
                list(rows(sweeper.OptunaMlflowSweeperConf, SWEEPER, _group_defaults()))))
    for group, options in (("sampler", sweeper.SAMPLERS), ("pruner", sweeper.PRUNERS)):
        for name, cls in options.items():
            out.append((f"`hydra/sweeper/{group}={name}`", f"`hydra.sweeper.{group}.*` with the "
                        f"`{name}` {group}.", list(rows(cls, f"{SWEEPER}{group}."))))
    return out


def markdown() -> str:
    """The reference as Markdown: a heading and a table per section."""
    parts = []
    for title, intro, section in sections():
        lines = [f"## {title}", "", intro, "", "| key | type | default | meaning |",
                 "|---|---|---|---|"]
        lines += [f"| `{r.path}` | {r.type} | {_cell(r.default)} | {_escape(r.meaning)} |"
                  for r in section]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def composed_keys() -> Iterator[str]:
    """Every key of the configs a user composes: the run's (`--cfg job`, both model families) and
    `hydra.sweeper`'s under each ready-made sweep (the samplers' and pruners' keys come from their
    dataclasses alone, which the reference walks)."""
    for overrides in ([], ["model=cnn"]):
        yield from _keys(OmegaConf.to_container(registry.compose(overrides), resolve=False))
    for name in registry.sweep_names():
        cfg = registry.compose([f"sweep={name}"], return_hydra_config=True)
        yield from _keys(OmegaConf.to_container(cfg.hydra.sweeper, resolve=False), SWEEPER)


def missing(keys: Iterable[str], documented: Iterable[Row]) -> list[str]:
    """Keys without a row (a key inside an opaque value is its row's), and rows without a
    meaning: what the reference would leave unexplained."""
    table = {r.path: r for r in documented}
    gaps = sorted({k for k in keys if k not in table and not _inside_opaque(k, table)})
    return gaps + [f"{r.path} (no meaning)" for r in table.values() if not r.meaning]


def all_rows() -> list[Row]:
    return [row for _, _, section in sections() for row in section]


def _inside_opaque(key: str, table: Mapping[str, Row]) -> bool:
    parts = key.replace("[]", "").split(".")
    prefixes = (table.get(".".join(parts[:i])) for i in range(1, len(parts)))
    return any(row is not None and row.opaque for row in prefixes)


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys of a plain config; a list of mappings is walked as `key[].field`."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _keys(value, path + ".")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            yield path
            for item in value:
                yield from _keys(item, path + "[].")
        else:
            yield path


def _flat(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _group_defaults() -> dict[str, Any]:
    """`{"sampler": "tpe", "pruner": "none"}`: the options the sweeper's defaults list picks."""
    return {key: value for entry in sweeper.OptunaMlflowSweeperConf().defaults
            for key, value in entry.items()}


def _options(group: str) -> list[str]:
    folder = resources.files(registry.CONF_PACKAGE) / group
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir()
                  if f.name.endswith(".yaml"))


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return None if f.default is dataclasses.MISSING else f.default


def _entry_schema(hint: Any) -> type | None:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _opaque(hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_opaque(a) for a in typing.get_args(hint))
    return origin in (dict, list)


def _type(hint: Any) -> str:
    if hint is Any:
        return "any"
    if hint is type(None):
        return "null"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin is list:
        inner = args[0] if args else Any
        if dataclasses.is_dataclass(inner):
            return "list of {" + ", ".join(f.name for f in dataclasses.fields(inner)) + "}"
        return f"list[{_type(inner)}]"
    if origin is dict:
        return "dict"
    return getattr(hint, "__name__", str(hint))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _cell(value: Any) -> str:
    return "" if value == "" else f"`{_escape(_show(value))}`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(markdown())
