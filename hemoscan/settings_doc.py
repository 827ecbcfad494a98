"""The README's configuration table, generated from the settings class.

``python -m hemoscan.settings_doc`` prints it; a test checks the README still matches.
"""

from __future__ import annotations

from hemoscan.settings import ENV_PREFIX, Settings


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        demo = {"model_path": "demo model", "series_model_path": "demo series stage"}
        return demo.get(name, "(computed)")
    value = field.default
    if value is None:
        return "unset"
    if hasattr(value, "value"):
        value = value.value
    return f"`{value}`"


def table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        lines.append(
            f"| `{ENV_PREFIX}{name.upper()}` | {_default(name)} | {field.description or ''} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
