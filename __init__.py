"""debugsim: a training-failure debugging simulator.

Installed as one import package: `debugsim.sim` (the engine and the app layer),
`debugsim.scenarios` (the catalogue) and `debugsim.cli` (the `debugsim` command).
"""
__version__ = "0.2.0"
