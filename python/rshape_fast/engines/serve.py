"""`rshape serve`: vLLM's OpenAI-compatible server with reward-guided decoding.

The command starts `vllm serve` on the LM's folder with `VllmArgsLogitsProcessor`
registered and the steering reward model named on the command line (the processor loads it
in vLLM's engine process when the server starts). A chat or text completion whose
`vllm_xargs` carry `rshape_prompt` (and any other `rshape_*` knob) is decoded with
(SRS-)ARGS; any other request is decoded by vLLM unchanged (vllm_processor.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from rshape_fast.cache import DEFAULT_LM, DEFAULT_REWARD_MODEL, DTYPE_NAMES

__all__ = ["add_serve_command", "serve_command"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The `vllm serve` command line and environment that `rshape serve` runs."""
    from rshape_fast.engines.vllm_model import PROCESSOR, import_vllm
    from rshape_fast.models.builtins import resolve_model

    import_vllm()  # one line naming the extra when vLLM is missing
    folder = resolve_model(args.lm, "lm")
    rm = args.rm or [DEFAULT_REWARD_MODEL]
    argv = [
        sys.executable,
        "-m",
        "rshape_fast.engines.vllm_server",
        os.fspath(folder),
        "--served-model-name",
        args.lm,
        "--logits-processors",
        PROCESSOR,
        "--dtype",
        args.dtype,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--max-model-len",
        str(args.max_model_len),
        "--enforce-eager",
        *(args.vllm_args[1:] if args.vllm_args[:1] == ["--"] else args.vllm_args),
    ]
    env = dict(os.environ)
    env["RSHAPE_REWARD_MODEL"] = rm[0] if len(rm) == 1 else json.dumps(rm)
    env["RSHAPE_REWARD_DTYPE"] = args.rm_dtype or args.dtype
    if args.api_key:
        # Through the environment, not argv, so the key does not show in `ps`.
        env["VLLM_API_KEY"] = args.api_key
    # As load_vllm_lm: the processor implements the V1 runner's interface; on CPU, a KV
    # cache of 4 GiB and no thread pinning unless the caller says otherwise.
    env.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    return argv, env


def cmd_serve(args: argparse.Namespace) -> NoReturn:
    argv, env = serve_command(args)
    if not env.get("VLLM_API_KEY") and args.host not in LOCAL_HOSTS:
        print(
            f"rshape serve: listening on {args.host} without --api-key: anyone who reaches "
            "the port can decode on this machine",
            file=sys.stderr,
        )
    print(
        f"rshape serve: vLLM on {args.lm} at http://{args.host}:{args.port}/v1, reward model "
        f"{env['RSHAPE_REWARD_MODEL']}",
        file=sys.stderr,
        flush=True,
    )
    os.execve(argv[0], argv, env)


def add_serve_command(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="vLLM's OpenAI-compatible server with reward-guided decoding (the vllm extra)",
        description="Start vLLM's OpenAI-compatible server on an LM with ARGS / SRS-ARGS as a "
        "logits processor. A request guided by vllm_xargs (rshape_prompt, rshape_shaping, "
        "rshape_weight, ...) decodes with the reward model; others decode unchanged. "
        "Arguments after -- go to `vllm serve`.",
    )
    serve.add_argument(
        "--lm", default=DEFAULT_LM, help=f"built-in name or HF folder (default: {DEFAULT_LM})"
    )
    serve.add_argument(
        "--rm",
        action="append",
        help=f"steering reward model, name or folder; repeat for an ensemble (default: "
        f"{DEFAULT_REWARD_MODEL}); a request may name another with rshape_rm",
    )
    serve.add_argument("--dtype", default=DTYPE_NAMES[0], choices=DTYPE_NAMES, help="LM weights")
    serve.add_argument(
        "--rm-dtype", choices=DTYPE_NAMES, help="reward model weights (default: --dtype)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--api-key",
        help="require `Authorization: Bearer KEY` on /v1 requests (HTTP 401 otherwise); "
        "default: VLLM_API_KEY if set, else no key",
    )
    serve.add_argument(
        "--max-model-len", type=int, default=2048, help="context of each request (default: 2048)"
    )
    serve.add_argument(
        "vllm_args", nargs=argparse.REMAINDER, help="-- then arguments of vllm serve"
    )
    serve.set_defaults(func=cmd_serve)
