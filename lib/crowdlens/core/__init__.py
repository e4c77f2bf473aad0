"""The shared core: what both studies use and nothing study-specific.

``config`` (where things live, atomic writes), ``device`` (which device runs the
models, its precision and its name), ``hub`` (models by name: offline
defaults or hub ids), ``encoders`` (fine-tuned encoder classifiers, ONNX scoring),
``estimators`` (scikit-learn conventions), ``metrics``, ``plots``, ``sampling`` and
``explore`` (descriptive helpers). Nothing here imports ``crowdlens.data``, a study,
or the book runner.
"""
