"""Heavy modules declared once at a module's top and imported on first use.

    np = lazy_import("numpy")      # nothing imported yet
    np.zeros(3)                    # numpy imported here, once

So reading a spec (which loads the family modules) or reusing a built engine
never pays for numpy, onnx or TensorFlow.
"""

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = None

    def _load(self) -> Any:
        target = self.__dict__["_lazy_target"]
        if target is None:
            target = importlib.import_module(self.__name__)
            self.__dict__["_lazy_target"] = target
        return target

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __dir__(self) -> Any:
        return dir(self._load())


def lazy_import(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute access."""
    return _LazyModule(name)
