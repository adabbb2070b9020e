"""`rshape serve`: vLLM's OpenAI server with the processor, started and stopped here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

import rshape_fast as rf
from rshape_fast.cache import DEFAULT_LM

TOKENS = 32
STARTUP_SECONDS = 300
API_KEY = "rshape-test-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict, api_key: str | None = API_KEY) -> dict:
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rshape_fast.cli",
                "serve",
                "--port",
                str(port),
                "--max-model-len",
                "1024",
                "--api-key",
                API_KEY,
                "--",
                "--block-size",
                "32",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"rshape serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(
                f"rshape serve did not start in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}"
            )
        time.sleep(2)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _chat(url: str, prompt: str, xargs: dict | None, api_key: str | None = API_KEY) -> str:
    body = {
        "model": DEFAULT_LM,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": TOKENS,
        "temperature": 0,
    }
    if xargs is not None:
        body["vllm_xargs"] = xargs
    return _post(f"{url}/v1/chat/completions", body, api_key)["choices"][0]["message"]["content"]


def test_guided_and_plain_chat_completions(server, vllm_lm, rm, prompts):
    prompt = prompts[0]
    guided = _chat(
        server, prompt, {"rshape_prompt": prompt, "rshape_weight": 1.0, "rshape_shaping": "srs"}
    )
    plain = _chat(server, prompt, None)
    offline_args = rf.generate(
        [prompt], lm=vllm_lm, rm=rm, method="args", weight=1.0, max_new_tokens=TOKENS
    )
    offline_base = rf.generate([prompt], lm=vllm_lm, method="base", max_new_tokens=TOKENS)
    assert guided == offline_args[0].text
    assert plain == offline_base[0].text
    assert guided != plain


def test_a_bad_knob_is_an_http_400(server, prompts):
    with pytest.raises(urllib.error.HTTPError) as err:
        _chat(server, prompts[0], {"rshape_prompt": prompts[0], "rshape_weigth": 1.0})
    assert err.value.code == 400
    assert "unknown key" in err.value.read().decode()


@pytest.mark.parametrize("api_key", [None, "wrong-key"], ids=["no-key", "wrong-key"])
def test_without_the_api_key_is_an_http_401(server, prompts, api_key):
    with pytest.raises(urllib.error.HTTPError) as err:
        _chat(server, prompts[0], {"rshape_prompt": prompts[0]}, api_key)
    assert err.value.code == 401
