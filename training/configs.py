"""Stage configs from a file and from flags: preset < `--config FILE` < command-line flags.

Every stage has one `*Config` dataclass (`SFTConfig`, `CurriculumConfig`,
`RLConfig`, `DistillConfig`, ...) that validates itself in `__post_init__`.
A preset (`training.presets`) gives the starting values; `--config FILE`
(YAML or JSON of that config, any subset of its fields, nested configs as
nested mappings) replaces some; flags replace a few more:

    config = merged(preset_value, read_config_file("rl.yaml"))
    config = merged(config, {"lam": 0.3, "beta": 0.02})

`merged` goes through `dataclasses.replace`, so every change is validated
by the config's own `__post_init__`; an unknown field is refused with the
known ones listed. The effective config is saved beside the checkpoint
(`training.context.save_checkpoint`) and can be passed back as `--config`.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A mapping from a `.json`, `.yaml` or `.yml` file (YAML through PyYAML, which comes with transformers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write the config as JSON"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
    else:
        raise ValueError(f"{path}: a config file ends in .json, .yaml or .yml")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping of field names to values, got {type(data).__name__}")
    return data


def merged(config: T, changes: Mapping[str, Any], where: str = "") -> T:
    """`config` with the fields named in `changes` replaced; a nested config takes a nested mapping.

    `where` prefixes field names in error messages (the path of a nested config).
    """
    if not changes:
        return config
    if not is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"merged() needs a config dataclass instance, got {type(config).__name__}")
    known = {f.name for f in fields(config) if f.init}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(
            f"{where or type(config).__name__}: unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    hints = typing.get_type_hints(type(config))
    updates: dict[str, Any] = {}
    for name, value in changes.items():
        path = f"{where}{name}"
        current = getattr(config, name)
        nested = current if is_dataclass(current) else _dataclass_in(hints[name])
        if isinstance(value, Mapping) and nested is not None:
            base = current if is_dataclass(current) else nested()
            updates[name] = merged(base, value, f"{path}.")
        else:
            updates[name] = _coerce(value, hints[name], path)
    try:
        return replace(config, **updates)  # type: ignore[type-var]
    except TypeError as e:  # a value of the wrong kind that the checks below let through
        raise ValueError(f"{where or type(config).__name__}: {e}") from None


def resolve(default: T, config_file: str | Path | None, flags: Mapping[str, Any]) -> T:
    """The effective config: `default` (the preset's), then the file's fields, then the flags that were given.

    flags: nested like the config; None means "not given" (argparse's default) and is dropped.
    """
    config = merged(default, read_config_file(config_file), f"{config_file}: ") if config_file else default
    return merged(config, _given(flags))


def _given(flags: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in flags.items():
        if isinstance(value, Mapping):
            value = _given(value)
            if not value:
                continue
        if value is not None:
            out[name] = value
    return out


def config_dict(config: Any) -> dict[str, Any]:
    """The config as JSON-ready values (what `--config` reads back)."""
    return json.loads(json.dumps(asdict(config), default=str))


def save_config(config: Any, path: Path) -> Path:
    path.write_text(json.dumps(asdict(config), indent=2, default=str))
    return path


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type in `hint` (`X` or `X | None`), if any."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    return next((o for o in options if isinstance(o, type) and is_dataclass(o)), None)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check a scalar against its field type; ints pass as floats, numeric strings ("1e-4", as YAML reads it) too."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{path}: a value is required (got null)")
    if bool in options:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected true or false, got {value!r}")
    if float in options and not isinstance(value, bool):
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{path}: expected a number, got {value!r}")
    if int in options:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected an integer, got {value!r}")
    if str in options and not isinstance(value, str):
        raise ValueError(f"{path}: expected a string, got {value!r}")
    if any(typing.get_origin(o) is tuple for o in options) and isinstance(value, list):
        return tuple(value)
    return value
