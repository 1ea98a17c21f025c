"""hfrnn: Hessian-free optimisation of recurrent networks (Martens & Sutskever, 2011).

The public API (:mod:`hfrnn.api`, ``docs/api.md``)::

    from hfrnn import HessianFree, HFOptions
    opt = HessianFree(model, loss="squared", hidden_nonlinearity="tanh")
    info = opt.step((inputs, targets))

The names below are loaded on first use, so ``import hfrnn`` stays light (the report and the
data builders never load the optimisers).
"""
__version__ = "0.5.1"

__all__ = ["HessianFree", "HFOptions", "CGOptions", "DampingOptions", "StructuralOptions", "LineSearchOptions",
           "BatchOptions", "HFStepInfo", "Batch", "ConfigError", "__version__"]

_WHERE = {"HessianFree": "hfrnn.api", "Batch": "hfrnn.tasks.base", "ConfigError": "hfrnn.errors",
          "DampingOptions": "hfrnn.optim.damping", "LineSearchOptions": "hfrnn.optim.search"}


def __getattr__(name: str):
    if name in __all__:
        import importlib

        value = getattr(importlib.import_module(_WHERE.get(name, "hfrnn.optim.hessian_free")), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
