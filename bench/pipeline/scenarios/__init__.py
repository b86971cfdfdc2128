"""The field's other reuse scenarios, beside the sub-task reuse of ``bench.pipeline.stages.reuse``.

``patch``: a weak model patched class by class with a strong model's modules (opt-in, ``--scenario
patch``); ``composition``: per class the best module of several trained models, composed into one
classifier (every grid with two or more models of a configuration). Both read a class module's
outputs through ``outputs.ClassOutputsStage``.
"""
