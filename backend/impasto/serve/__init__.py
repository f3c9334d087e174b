"""The gRPC backend and its Python client.

`server` is the thin servicer (convert the request, call the Engine, convert back) with health and
reflection; `jobs` the per-device queue with progress, cancel and deadlines; `wire` the protobuf <->
PixelBuffer codec; `access` tokens and bind checks; `client` the grpcio client that re-raises the same
`impasto.errors` classes. The only package besides `impasto._proto` that imports generated protobuf code.

May import: `impasto.engine` and everything below it. Never `batch` or `cli`."""
