"""Every stage family registers its stages, readers and commands on import.

Importing this package imports every module in it, so a new stage family is one new
file: the engine finds it through the registries in `stages.base`, never by name.
"""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
