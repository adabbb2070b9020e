"""Serving engines a language model can run on besides this package's transformers loop:
vLLM (`load_lm(..., engine="vllm")`, `rshape serve`; docs/scaling.md, §3). Nothing here is
imported unless a vLLM model is asked for, and vLLM itself only then (the `vllm` extra)."""
