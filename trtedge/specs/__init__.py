"""Model specs: the YAML files that describe a detector to trtedge.

``load_spec("shapes_yolo")`` reads a built-in spec by name;
``load_spec("path/to/my.yaml")`` reads any file. ``list_specs()`` lists the
built-in ones. Everything downstream receives the typed :class:`ModelSpec`.
"""

import os
from typing import Any, Dict, List, Optional

from ..errors import SpecError
from .loader import BUILTIN_DIR, LABELS_DIR, MODELS_DIR, spec_from_data, spec_from_dict
from .schema import ModelSpec

__all__ = ["ModelSpec", "load_spec", "spec_from_dict", "list_specs", "builtin_spec_path", "is_spec_reference",
           "LABELS_DIR", "MODELS_DIR"]


def builtin_spec_path(name: str) -> Optional[str]:
    path = os.path.join(BUILTIN_DIR, name + ".yaml")
    return path if os.path.isfile(path) else None


def list_specs() -> List[str]:
    """Names of the built-in specs, sorted."""
    return sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".yaml"))


def is_spec_reference(text: str) -> bool:
    """True for a built-in spec name or a path to a YAML file."""
    return builtin_spec_path(text) is not None or text.lower().endswith((".yaml", ".yml"))


def load_spec(ref: str) -> ModelSpec:
    """Load a spec by built-in name or YAML path, validated."""
    path = builtin_spec_path(ref) if os.sep not in ref and "/" not in ref else None
    if path is None:
        path = ref
    if not os.path.isfile(path):
        if ref.lower().endswith((".yaml", ".yml")) or os.sep in ref or "/" in ref:
            raise SpecError("spec file {} does not exist".format(ref))
        raise SpecError(
            "'{}' is neither a built-in spec nor a file; built-in specs: {} "
            "(or give a path to a .yaml spec)".format(ref, ", ".join(list_specs()))
        )
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)  # type: Any
    except RecursionError:
        raise SpecError("{}: the YAML is nested too deeply to be a spec".format(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " at line {}, column {}".format(mark.line + 1, mark.column + 1) if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("{}: not valid YAML{}: {}".format(path, where, problem))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("cannot read spec {}: {}".format(path, exc))
    try:
        return spec_from_data(data, path, base_dir=os.path.dirname(os.path.abspath(path)))
    except RecursionError:
        raise SpecError("{}: the YAML is nested too deeply to be a spec".format(path))


def spec_summary(spec: ModelSpec) -> Dict[str, Any]:
    from ..engines import families

    head = families.get(spec.family).describe(spec.section)
    return {
        "name": spec.name,
        "family": spec.family,
        "head": head,
        "input": "{}x{}".format(spec.input.width, spec.input.height),
        "classes": spec.num_classes,
        "source": spec.source.file or "-",
        "description": spec.description,
    }
