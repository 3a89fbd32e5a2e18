"""mlffc: distil machine-learning force fields into small students and compile them per target.

The repository's folders map onto this package in pyproject.toml: toolchain/ is `mlffc`,
passes/ is `mlffc.passes`, targets/ is `mlffc.targets`, trainers/ is `mlffc.trainers`.
"""

__version__ = "0.1.0"
