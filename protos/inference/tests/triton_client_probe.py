"""Runs tritonclient in its own process (tritonclient bundles its own copy of the `inference`
package, which cannot share a descriptor pool with ours).

  triton_client_probe.py descriptor      print tritonclient's grpc service FileDescriptorProto
                                          (base64) and the module it came from, as JSON
  triton_client_probe.py client ADDRESS  drive a server with tritonclient.grpc, print results as JSON
"""

from __future__ import annotations

import base64
import importlib
import json
import sys


def descriptor() -> dict[str, str]:
    for name in ("tritonclient.grpc.service_pb2", "tritonclient.grpc.grpc_service_pb2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return {"module": name, "file": base64.b64encode(module.DESCRIPTOR.serialized_pb).decode()}
    raise SystemExit("tritonclient ships no grpc service module")


def client(address: str) -> dict[str, object]:
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    c = grpcclient.InferenceServerClient(url=address)
    out: dict[str, object] = {
        "live": c.is_server_live(),
        "ready": c.is_server_ready(),
        "model_ready": c.is_model_ready("doubler", "1"),
        "server_metadata": c.get_server_metadata(as_json=True),
        "model_metadata": c.get_model_metadata("doubler", "1", as_json=True),
    }
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    text = np.array([b"hello", b"causeway"], dtype=np.object_)
    inputs = [grpcclient.InferInput("INPUT0", [2, 4], "FP32"), grpcclient.InferInput("TEXT", [2], "BYTES")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(text)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("TEXT_OUT")]
    result = c.infer("doubler", inputs, model_version="1", outputs=outputs, request_id="req-1")
    out["output0"] = result.as_numpy("OUTPUT0").tolist()
    out["text_out"] = [b.decode() for b in result.as_numpy("TEXT_OUT").tolist()]
    response = result.get_response(as_json=True)
    out["response_id"] = response.get("id")
    out["response_model"] = [response.get("model_name"), response.get("model_version")]
    try:
        c.infer("missing", inputs)
        out["missing_model_status"] = "OK"
    except InferenceServerException as exc:
        out["missing_model_status"] = exc.status()
    c.close()
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["descriptor"]:
        print(json.dumps(descriptor()))
        return 0
    if argv[:1] == ["client"] and len(argv) == 2:
        print(json.dumps(client(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
