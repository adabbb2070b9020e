"""Data files shipped with rshape_fast.

``prompts.jsonl`` holds the bundled hand-written prompts; read it with
:func:`rshape_fast.prompts.load_prompts`, not directly. This module exists so that
``importlib.resources.files("rshape_fast.data")`` resolves the folder from a wheel, an
editable install or a zip import alike.
"""
