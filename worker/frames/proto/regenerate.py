"""Regenerate the committed protobuf/gRPC modules: ``python -m worker.frames.proto.regenerate``."""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "video_streaming.proto"
GRPC_MODULE = HERE / "video_streaming_pb2_grpc.py"


def fix_imports(path: Path = GRPC_MODULE) -> bool:
    """Make the generated gRPC module import its message module relative to the package."""
    text = path.read_text()
    fixed = re.sub(r"^import video_streaming_pb2 as ", "from . import video_streaming_pb2 as ", text, flags=re.M)
    if fixed != text:
        path.write_text(fixed)
    return fixed != text


def main() -> int:
    from grpc_tools import protoc

    args = [
        "grpc_tools.protoc",
        f"-I{HERE}",
        f"--python_out={HERE}",
        f"--grpc_python_out={HERE}",
        f"--pyi_out={HERE}",
        str(HERE / PROTO),
    ]
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
        return code
    fix_imports()
    print(f"regenerated {PROTO} -> video_streaming_pb2.py, video_streaming_pb2_grpc.py, video_streaming_pb2.pyi")
    return 0


if __name__ == "__main__":
    sys.exit(main())
