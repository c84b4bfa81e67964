"""Drives a runner with the real tritonclient.grpc or KServe InferenceGRPCClient; prints JSON.

Runs in its own process: both clients bundle their own `inference` protos, which cannot share a
process with ours. It imports nothing from the repository.

  oip_client_probe.py triton ADDRESS TOKEN
  oip_client_probe.py kserve ADDRESS TOKEN
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np

ECHO_TYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]


def _values(datatype: str, np_dtype) -> np.ndarray:
    if datatype == "BOOL":
        return (np.arange(6) % 2 == 0).reshape(2, 3)
    return (np.arange(6) + 1).astype(np_dtype).reshape(2, 3)


def triton(address: str, token: str) -> dict:
    import ml_dtypes
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    headers = {"authorization": f"Bearer {token}"}
    client = grpcclient.InferenceServerClient(url=address)
    out: dict = {
        "live": client.is_server_live(),  # public: no token
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("tox", "1", headers=headers),
        "server_metadata": client.get_server_metadata(headers=headers, as_json=True),
        "model_metadata": client.get_model_metadata("tox", "1", headers=headers, as_json=True),
    }
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    inp = grpcclient.InferInput("input", [2, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("tox", [inp], model_version="1", request_id="t-1", headers=headers)
    out["tox"] = {"x": x.tolist(), "y": result.as_numpy("output").tolist(), "id": result.get_response().id}

    inputs, sent = [], {}
    for datatype in [*ECHO_TYPES, "BF16"]:
        np_dtype = triton_to_np_dtype(datatype)
        values = _values(datatype, np.float32 if datatype == "BF16" else np_dtype)
        if datatype == "BF16":
            values = values.astype(ml_dtypes.bfloat16)
        tensor = grpcclient.InferInput(f"in_{datatype.lower()}", [2, 3], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
        sent[datatype] = values.astype(np.float64).tolist()
    result = client.infer("echo", inputs, headers=headers)
    out["echo"] = {
        d: result.as_numpy(f"out_{d.lower()}").astype(np.float64).tolist() == sent[d] for d in [*ECHO_TYPES, "BF16"]
    }

    errors = {}
    bad = grpcclient.InferInput("input", [2, 5], "FP32")
    bad.set_data_from_numpy(np.zeros((2, 5), np.float32))
    for name, call in {
        "bad_shape": lambda: client.infer("tox", [bad], headers=headers),
        "missing_model": lambda: client.infer("missing", [inp], headers=headers),
        "no_token": lambda: client.infer("tox", [inp]),
    }.items():
        try:
            call()
            errors[name] = ["OK", ""]
        except InferenceServerException as exc:
            errors[name] = [exc.status(), exc.message()]
    out["errors"] = errors

    # 32 requests in flight at once: every one answered, each with its own rows.
    done: list = []
    for i in range(32):
        one = grpcclient.InferInput("input", [1, 4], "FP32")
        one.set_data_from_numpy(np.full((1, 4), i, np.float32))
        client.async_infer("tox", [one], lambda result, error, i=i: done.append((i, result, error)), headers=headers)
    import time

    deadline = time.monotonic() + 30
    while len(done) < 32 and time.monotonic() < deadline:
        time.sleep(0.01)
    out["async"] = sorted([i, None if e else r.as_numpy("output").tolist(), str(e) if e else None] for i, r, e in done)
    client.close()
    return out


async def _kserve(address: str, token: str) -> dict:
    import grpc
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    headers = (("authorization", f"Bearer {token}"),)
    client = InferenceGRPCClient(url=address)
    out: dict = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready("tox", headers=headers),
    }
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    out["x"] = x.tolist()
    # Typed contents: `data` as a list goes into contents.fp32_contents.
    typed = InferInput("input", [2, 4], "FP32", data=x.reshape(-1).tolist())
    response = await client.infer(InferRequest("tox", infer_inputs=[typed], request_id="k-1"), headers=headers)
    out["typed"] = {"y": response.outputs[0].as_numpy().reshape(2, 3).tolist(), "id": response.id}
    # Raw contents: numpy data goes into raw_input_contents.
    raw = InferInput("input", [2, 4], "FP32")
    raw.set_data_from_numpy(x, binary_data=True)
    response = await client.infer(InferRequest("tox", infer_inputs=[raw]), headers=headers)
    out["raw"] = {"y": response.outputs[0].as_numpy().reshape(2, 3).tolist()}
    ints = InferInput("ids", [1, 2], "INT64", data=[3, 4])
    response = await client.infer(InferRequest("lookup", infer_inputs=[ints]), headers=headers)
    out["lookup_shape"] = list(response.outputs[0].shape)
    try:
        bad = InferInput("input", [1, 3], "FP32", data=[1.0, 2.0, 3.0])
        await client.infer(InferRequest("tox", infer_inputs=[bad]), headers=headers)
        out["bad_shape"] = "OK"
    except grpc.aio.AioRpcError as exc:
        out["bad_shape"] = [exc.code().name, exc.details()]
    await client.close()
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("triton", "kserve"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, address, token = argv
    result = triton(address, token) if kind == "triton" else asyncio.run(_kserve(address, token))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
