"""Put a checkout's package folder on this interpreter's path (a .pth file in its
site-packages), as an editable install does without building anything: the vLLM
environment (`make vllm-env`) uses the package and extension that `make dev` built."""

import sys
import sysconfig
from pathlib import Path

folder = Path(sys.argv[1]).resolve()
if not (folder / "rshape_fast" / "__init__.py").is_file():
    sys.exit(f"link_checkout: {folder} holds no rshape_fast package")
target = Path(sysconfig.get_paths()["purelib"]) / "rshape_fast_checkout.pth"
target.write_text(f"{folder}\n")
print(f"link_checkout: {target} -> {folder}")
