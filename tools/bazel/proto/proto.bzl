"""Protos → Python at build time (docs/adr/0001-build.md). Generated code is never committed.

`causeway_proto(name, srcs, deps)` in a package under protos/ declares:
  <name>_proto   the .proto sources and their transitive closure (ProtoSourcesInfo)
  <name>_py_pb2  a Python library of *_pb2.py and *_pb2_grpc.py, importable by proto package
                 (`from causeway.registry.v1 import registry_pb2`), with *_pb2.pyi and
                 *_pb2_grpc.pyi from mypy-protobuf's plugins, which type them for mypy and IDEs
Import paths are relative to the `protos/` directory, which is also buf's module root, so
`import "causeway/common/v1/common.proto";` reads the same to protoc, buf and every IDE.
"""

PROTO_ROOT = "protos"

ProtoSourcesInfo = provider(
    doc = "Proto sources of a target and of everything it imports.",
    fields = {
        "direct": "depset of this target's .proto files",
        "transitive": "depset of all .proto files needed to compile them",
    },
)

def _proto_sources_impl(ctx):
    direct = depset(ctx.files.srcs)
    transitive = depset(
        ctx.files.srcs,
        transitive = [dep[ProtoSourcesInfo].transitive for dep in ctx.attr.deps],
    )
    return [
        ProtoSourcesInfo(direct = direct, transitive = transitive),
        DefaultInfo(files = direct, runfiles = ctx.runfiles(transitive_files = transitive)),
    ]

proto_sources = rule(
    implementation = _proto_sources_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".proto"], mandatory = True),
        "deps": attr.label_list(providers = [ProtoSourcesInfo]),
    },
)

def _import_path(src):
    prefix = PROTO_ROOT + "/"
    if not src.short_path.startswith(prefix):
        fail("%s: protos must live under %s/" % (src.short_path, PROTO_ROOT))
    return src.short_path[len(prefix):]

def _py_proto_impl(ctx):
    info = ctx.attr.proto[ProtoSourcesInfo]
    pkg_prefix = ctx.label.package + "/"
    outputs = []
    for src in info.direct.to_list():
        if not src.short_path.startswith(pkg_prefix):
            fail("%s must be in package %s" % (src.short_path, ctx.label.package))
        stem = src.short_path[len(pkg_prefix):-len(".proto")]
        for suffix in ["_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi"]:
            outputs.append(ctx.actions.declare_file(stem + suffix))

    out_root = ctx.bin_dir.path + "/" + PROTO_ROOT
    args = ctx.actions.args()
    args.add("-I" + PROTO_ROOT)
    args.add("--python_out=" + out_root)
    args.add("--grpc_python_out=" + out_root)

    # protoc's own --pyi_out types an enum's Value() as a plain int, which no enum field accepts;
    # mypy-protobuf types enum values (ValueType), gRPC stubs and servicers.
    args.add("--plugin=protoc-gen-mypy=" + ctx.executable._protoc_gen_mypy.path)
    args.add("--mypy_out=quiet:" + out_root)
    args.add("--plugin=protoc-gen-mypy_grpc=" + ctx.executable._protoc_gen_mypy_grpc.path)
    args.add("--mypy_grpc_out=quiet:" + out_root)
    args.add_all([_import_path(src) for src in info.direct.to_list()])
    ctx.actions.run(
        executable = ctx.executable._protoc,
        arguments = [args],
        inputs = info.transitive,
        tools = [
            ctx.attr._protoc_gen_mypy[DefaultInfo].files_to_run,
            ctx.attr._protoc_gen_mypy_grpc[DefaultInfo].files_to_run,
        ],
        outputs = outputs,
        mnemonic = "PyProtoc",
        progress_message = "Generating Python for %s" % ctx.label,
    )

    py_outputs = [f for f in outputs if f.extension == "py"]
    transitive_sources = depset(
        py_outputs,
        transitive = [dep[PyInfo].transitive_sources for dep in ctx.attr.deps],
    )
    runfiles = ctx.runfiles(files = outputs)
    for dep in ctx.attr.deps:
        runfiles = runfiles.merge(dep[DefaultInfo].default_runfiles)
    return [
        DefaultInfo(files = depset(outputs), runfiles = runfiles),
        PyInfo(
            transitive_sources = transitive_sources,
            imports = depset(
                [ctx.workspace_name + "/" + PROTO_ROOT],
                transitive = [dep[PyInfo].imports for dep in ctx.attr.deps],
            ),
            has_py3_only_sources = True,
        ),
    ]

py_proto_library = rule(
    implementation = _py_proto_impl,
    attrs = {
        "proto": attr.label(providers = [ProtoSourcesInfo], mandatory = True),
        "deps": attr.label_list(providers = [PyInfo]),
        "_protoc": attr.label(
            default = "//tools/bazel/proto:protoc",
            executable = True,
            cfg = "exec",
        ),
        "_protoc_gen_mypy": attr.label(
            default = "//tools/bazel/proto:protoc_gen_mypy",
            executable = True,
            cfg = "exec",
        ),
        "_protoc_gen_mypy_grpc": attr.label(
            default = "//tools/bazel/proto:protoc_gen_mypy_grpc",
            executable = True,
            cfg = "exec",
        ),
    },
)

def _sibling(label, suffix):
    if ":" in label:
        return label + suffix
    return label + ":" + label.split("/")[-1] + suffix

def causeway_proto(name, srcs, deps = [], visibility = ["//visibility:public"]):
    """Declares <name>_proto and <name>_py_pb2. `deps` name other causeway_proto bases."""
    proto_sources(
        name = name + "_proto",
        srcs = srcs,
        deps = [_sibling(d, "_proto") for d in deps],
        visibility = visibility,
    )
    py_proto_library(
        name = name + "_py_pb2",
        proto = ":" + name + "_proto",
        deps = [_sibling(d, "_py_pb2") for d in deps],
        visibility = visibility,
    )
