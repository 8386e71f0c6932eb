"""Generated protobuf/gRPC modules of the frame API (``chrys.cloud.videostreaming.v1beta1``).

``video_streaming_pb2.py``, ``video_streaming_pb2_grpc.py`` and ``video_streaming_pb2.pyi`` are
generated from ``video_streaming.proto`` and committed. Regenerate them from the repository root
with::

    .venv/bin/python -m worker.frames.proto.regenerate

which runs::

    python -m grpc_tools.protoc -I worker/frames/proto --python_out=worker/frames/proto \\
        --grpc_python_out=worker/frames/proto --pyi_out=worker/frames/proto \\
        worker/frames/proto/video_streaming.proto

and then rewrites ``import video_streaming_pb2`` in the gRPC module to a relative
``from . import video_streaming_pb2`` so it works as ``worker.frames.proto.video_streaming_pb2_grpc``.
"""
