"""`service_image`: a Causeway service's OCI image (docs/adr/0002-oci-images.md).

    service_image(name = "image", binary = ":registry", pip_packages = ["mlflow", ...])

The shared server stack's distributions (what libs/grpc_server, libs/auth, libs/config,
libs/telemetry and the generated protos import) plus the service's own, gRPC on 50051 and
metrics on 9090. tools/oci/check_service_images.sh checks that the lists cover every import.
"""

load("//tools/bazel/oci:image.bzl", "py_oci_image")

SERVICE_PIP_PACKAGES = [
    "cryptography",
    "googleapis-common-protos",
    "grpcio",
    "grpcio-health-checking",
    "grpcio-reflection",
    "prometheus-client",
    "protobuf",
    "pyjwt",
    "pyyaml",
]

def service_image(name, binary, pip_packages = [], **kwargs):
    """py_oci_image with the shared packages and ports; kwargs (e.g. base) pass through."""
    py_oci_image(
        name = name,
        binary = binary,
        exposed_ports = ["50051/tcp", "9090/tcp"],
        pip_packages = sorted(SERVICE_PIP_PACKAGES + [p for p in pip_packages if p not in SERVICE_PIP_PACKAGES]),
        **kwargs
    )
