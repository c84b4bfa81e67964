"""inference.GRPCInferenceService through a real server with real tokens (our generated stubs).

Every datatype a torch model takes, raw and typed; every kind of bad input gets its status code
and a clear message while the server keeps serving; batch-mates of a failing request succeed.
"""

from concurrent import futures

import grpc
import numpy as np
import pytest

from inference import grpc_service_pb2 as pb
from inference import grpc_service_pb2_grpc as pb_grpc
from libs.testing.waiting import wait_until
from services.gpu_runner.api.oip_codec import TYPED_FIELD
from services.gpu_runner.domain import tensors
from services.gpu_runner.tests import fixtures as fx
from services.gpu_runner.tests.harness import MIB, runner_harness


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oip")
    source = fx.LocalSource()
    source.add("echo", 1, fx.echo_torchscript(), "TORCHSCRIPT", signature=fx.ECHO_SIGNATURE)
    source.add("typed_echo", 1, fx.typed_echo_torchscript(), "TORCHSCRIPT", signature=fx.TYPED_ECHO_SIGNATURE)
    source.add("half", 1, fx.half_torchscript(), "TORCHSCRIPT", signature=fx.HALF_SIGNATURE)
    source.add("lookup", 1, fx.embedding_torchscript(), "TORCHSCRIPT", signature=fx.EMBEDDING_SIGNATURE)
    source.add("tox", 1, fx.torchscript_bytes(fx.mlp()), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    source.add("tox", 2, fx.torchscript_bytes(fx.mlp(seed=7)), "TORCHSCRIPT", signature=fx.MLP_SIGNATURE)
    with runner_harness(
        tmp, source, MAX_QUEUE_DELAY_MS="20", PRELOAD="echo:1,typed_echo:1,half:1,lookup:1,tox:1,tox:2"
    ) as harness:
        wait_until(lambda: harness.app.readiness.ready, timeout=120, message=lambda: str(harness.app.readiness.pending))
        yield harness


@pytest.fixture(scope="module")
def stub(run):
    return pb_grpc.GRPCInferenceServiceStub(run.channel)


@pytest.fixture(scope="module")
def md(run):
    return run.md("alice", ["researcher"], teams=["oncology"])


def _values(datatype: str, rows: int = 2) -> np.ndarray:
    count = rows * 3
    if datatype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(rows, 3)
    if datatype == "BF16":  # bit patterns of 1.0, 2.0, ... in bfloat16
        return (np.arange(1, count + 1, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).reshape(rows, 3)
    return (np.arange(count) + 1).astype(tensors.DTYPES[datatype]).reshape(rows, 3)


def _echo_request(model: str, datatypes, raw: bool) -> tuple[pb.ModelInferRequest, dict[str, np.ndarray]]:
    request = pb.ModelInferRequest(model_name=model, model_version="1", id="r-1")
    sent = {}
    for datatype in datatypes:
        values = _values(datatype)
        sent[datatype] = values
        tensor = request.inputs.add(name=f"in_{datatype.lower()}", datatype=datatype, shape=[2, 3])
        if raw:
            request.raw_input_contents.append(tensors.to_raw(values, datatype))
        else:
            # FP16/BF16 have no typed field; a client trying anyway would pick fp32_contents.
            getattr(tensor.contents, TYPED_FIELD.get(datatype, "fp32_contents")).extend(values.reshape(-1).tolist())
    return request, sent


def _decode(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for index, tensor in enumerate(response.outputs):
        if response.raw_output_contents:
            out[tensor.name] = tensors.from_raw(
                response.raw_output_contents[index], tensor.datatype, list(tensor.shape), tensor.name
            )
        else:
            values = getattr(tensor.contents, TYPED_FIELD[tensor.datatype])
            out[tensor.name] = np.array(values, dtype=tensors.DTYPES[tensor.datatype]).reshape(list(tensor.shape))
    return out


def test_probes_are_public_and_the_runner_is_ready(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready


def _check_echo(response, sent, datatypes):
    assert (response.model_version, response.id) == ("1", "r-1")
    got = _decode(response)
    for index, datatype in enumerate(datatypes):
        out = response.outputs[index]
        assert (out.name, out.datatype, list(out.shape)) == (f"out_{datatype.lower()}", datatype, [2, 3])
        np.testing.assert_array_equal(got[out.name], sent[datatype])


def test_every_torch_datatype_round_trips_raw(stub, md):
    request, sent = _echo_request("echo", fx.TORCH_DATATYPES, raw=True)
    response = stub.ModelInfer(request, metadata=md)
    assert len(response.raw_output_contents) == len(fx.TORCH_DATATYPES) == 13
    _check_echo(response, sent, fx.TORCH_DATATYPES)


def test_every_typed_datatype_round_trips_typed(stub, md):
    request, sent = _echo_request("typed_echo", fx.TYPED_DATATYPES, raw=False)
    response = stub.ModelInfer(request, metadata=md)
    assert not response.raw_output_contents  # typed in, typed out
    _check_echo(response, sent, fx.TYPED_DATATYPES)


def test_fp16_and_bf16_only_travel_raw(stub, md):
    request, _ = _echo_request("echo", fx.TORCH_DATATYPES, raw=False)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request, metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FP16 has no typed contents field; send it in raw_input_contents" in (err.value.details() or "")
    typed = pb.ModelInferRequest(model_name="half")
    typed.inputs.add(name="x", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1.0, 2.5, -3.0])
    response = stub.ModelInfer(typed, metadata=md)
    assert len(response.raw_output_contents) == 2  # a typed request, but FP16/BF16 outputs force raw
    out = _decode(response)
    assert out["half"].tolist() == [[1.0, 2.5, -3.0]]
    assert out["brain"].tolist() == [[0x3F80, 0x4020, 0xC040]]  # bfloat16 bit patterns


def _mlp_request(**fields) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=fields.pop("model", "tox"), model_version=fields.pop("version", ""))
    shape = fields.pop("shape", [1, fx.IN])
    datatype = fields.pop("datatype", "FP32")
    request.inputs.add(name=fields.pop("name", "input"), datatype=datatype, shape=shape)
    raw = fields.pop("raw", None)
    request.raw_input_contents.append(
        raw if raw is not None else np.zeros(shape, tensors.DTYPES.get(datatype, np.float32)).tobytes()
    )
    return request


@pytest.mark.parametrize(
    ("request_factory", "code", "message"),
    [
        (lambda: _mlp_request(shape=[1, 5]), "INVALID_ARGUMENT", "dimension 1 is 5, but the model takes input FP32"),
        (lambda: _mlp_request(datatype="FP64"), "INVALID_ARGUMENT", "datatype FP64, but the model takes"),
        (lambda: _mlp_request(raw=b"\0" * 7), "INVALID_ARGUMENT", "7 bytes of raw content"),
        (lambda: _mlp_request(datatype="FP33"), "INVALID_ARGUMENT", "unknown datatype 'FP33'"),
        (lambda: _mlp_request(name="features"), "INVALID_ARGUMENT", "unknown input(s) features"),
        (lambda: _mlp_request(model="nope"), "NOT_FOUND", "model 'nope' is not loaded"),
        (lambda: _mlp_request(version="9"), "NOT_FOUND", "version 9 is not loaded (loaded versions: [1, 2])"),
        (lambda: _mlp_request(version="latest"), "INVALID_ARGUMENT", "must be a version number"),
        (lambda: pb.ModelInferRequest(model_name="tox"), "INVALID_ARGUMENT", "the request has no inputs"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(stub, md, request_factory, code, message):
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request_factory(), metadata=md)
    assert err.value.code().name == code
    assert message in (err.value.details() or "")
    assert stub.ModelInfer(_mlp_request(), metadata=md).outputs[0].shape == [1, fx.IN - 1]


def test_shared_memory_mixing_and_unknown_outputs_are_refused(stub, md):
    shm = _mlp_request()
    shm.inputs[0].parameters["shared_memory_region"].string_param = "region0"
    mixed = _mlp_request()
    mixed.inputs[0].contents.fp32_contents.extend([0.0] * fx.IN)
    unknown_out = _mlp_request()
    unknown_out.outputs.add(name="logits")
    for request, message in (
        (shm, "shared-memory parameters (shared_memory_region) are not supported"),
        (mixed, "raw_input_contents or typed contents, not both"),
        (unknown_out, "requested output(s) logits unknown"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(request, metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in (err.value.details() or "")


def test_oversize_message_is_resource_exhausted(stub, md):
    big = _mlp_request(shape=[300_000, fx.IN])  # 4.8 MB > the 4 MiB limit
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(big, metadata=md)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ModelInfer(_mlp_request(), metadata=md).model_name == "tox"
    assert big.ByteSize() > 4 * MIB


def test_empty_version_is_the_newest_and_versions_differ(stub, md):
    x = np.ones((1, fx.IN), np.float32)
    outs = {}
    for version in ("", "1", "2"):
        response = stub.ModelInfer(_mlp_request(version=version, raw=x.tobytes()), metadata=md)
        outs[version] = (response.model_version, _decode(response)["output"])
    assert outs[""][0] == "2"
    np.testing.assert_allclose(outs["1"][1], fx.reference(fx.mlp(), x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outs[""][1], outs["2"][1])


def test_a_failing_request_never_fails_its_batch_mates(run, stub, md):
    """20 concurrent requests on the embedding model; one asks for id 99 (out of range inside the model)."""
    before = run.app.models._entries["lookup:1"].batcher.stats.isolated_reruns

    def call(i):
        ids = np.array([[i % 10, 99 if i == 7 else 1]], np.int64)
        request = pb.ModelInferRequest(model_name="lookup")
        request.inputs.add(name="ids", datatype="INT64", shape=[1, 2])
        request.raw_input_contents.append(ids.tobytes())
        try:
            return stub.ModelInfer(request, metadata=md, timeout=30)
        except grpc.RpcError as err:
            return err

    with futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(call, range(20)))
    failures = [i for i, r in enumerate(results) if isinstance(r, grpc.RpcError)]
    assert failures == [7]
    assert results[7].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model lookup:1 failed on this request" in results[7].details()
    assert "index out of range" in results[7].details()
    assert run.app.models._entries["lookup:1"].batcher.stats.isolated_reruns > before


def test_concurrent_requests_are_batched(run, stub, md):
    stats = run.app.models._entries["tox:1"].batcher.stats
    before = (stats.batches, stats.requests)
    with futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: stub.ModelInfer(_mlp_request(version="1"), metadata=md), range(64)))
    batches, requests = stats.batches - before[0], stats.requests - before[1]
    assert requests == 64 and batches < 64


def test_metadata_and_readiness(stub, md):
    server = stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=md)
    assert server.name == "causeway-gpu-runner"
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="tox"), metadata=md)
    assert meta.versions == ["1", "2"] and meta.platform == "pytorch_torchscript"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("input", "FP32", [-1, fx.IN])]
    assert stub.ModelReady(pb.ModelReadyRequest(name="tox", version="2"), metadata=md).ready
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelReady(pb.ModelReadyRequest(name="nope"), metadata=md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_inference_needs_a_token_with_runner_infer(run, stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(_mlp_request())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(_mlp_request(), metadata=run.md("quinn", ["qa-approver"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "runner.infer" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="tox"), metadata=(("authorization", "Bearer nonsense"),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
