"""Frame API of an edge host: gRPC service ``chrys.cloud.videostreaming.v1beta1.Image`` on port
50001, serving the frames the camera processes publish on the frame bus (docs/frames.md)."""
