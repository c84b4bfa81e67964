"""`py_oci_image`: a deterministic OCI image layout from a py_binary (docs/adr/0002-oci-images.md).

Layers, bottom to top:
  1. base           a Debian layer made offline from host packages (@debian_base//:layer)
  2. site-packages  only `pip_packages` and their Requires-Dist closure, from the locked venv,
                    at /app/site-packages (skipped when `pip_packages` is empty)
  3. app            the binary's runfiles at /app/runfiles/<repo>/<path>
The entrypoint is `<python> /app/runfiles/<workspace>/<main>.py`; PYTHONPATH holds the binary's
import roots (e.g. causeway_monorepo/protos for generated protos), the workspace root and
/app/site-packages. Outputs: `<name>/` (an OCI image layout, ref name "latest") and
`<name>.digest` (the manifest digest). The same sources give the same digest at any checkout path
or output base. Images are always tagged `manual`: build them by name, never as part of `//...`.
"""

_PY_TOOLCHAIN = "@bazel_tools//tools/python:toolchain_type"
_APP_ROOT = "/app/runfiles"
_SITE_PACKAGES = "/app/site-packages"

PyMainInfo = provider(
    doc = "The main source file of a py_binary.",
    fields = {"main": "File: what `python <main>` runs"},
)

def _py_main_aspect_impl(target, ctx):
    if ctx.rule.kind != "py_binary":
        fail("%s: py_oci_image needs a py_binary, got a %s" % (target.label, ctx.rule.kind))
    candidates = ctx.rule.files.main
    if not candidates:
        # Bazel's own default: the source named after the target.
        wanted = "/" + target.label.name + ".py"
        candidates = [f for f in ctx.rule.files.srcs if ("/" + f.short_path).endswith(wanted)]
    if len(candidates) != 1:
        fail("%s: cannot tell the main file; set `main` on the py_binary" % target.label)
    return [PyMainInfo(main = candidates[0])]

_py_main_aspect = aspect(implementation = _py_main_aspect_impl)

def _runfiles_path(ctx, f):
    # short_path is "../repo/x" for other repositories and "pkg/x" for the main one.
    return f.short_path[3:] if f.short_path.startswith("../") else ctx.workspace_name + "/" + f.short_path

def _file_arg(f):
    # Top level because Starlark 4.2.3 rejects nested functions as map_each callbacks.
    return "--file=%s\t%s" % (f.short_path, f.path)

def _layer_outputs(ctx, stem):
    return (
        ctx.actions.declare_file("%s.layers/%s.tar.gz" % (ctx.label.name, stem)),
        ctx.actions.declare_file("%s.layers/%s.json" % (ctx.label.name, stem)),
    )

def _site_packages_layer(ctx):
    blob, desc = _layer_outputs(ctx, "site-packages")
    args = ctx.actions.args()
    args.add("site-packages")
    args.add("--venv-path-file", ctx.file._venv_path)
    args.add_all(ctx.attr.pip_packages, format_each = "--requirement=%s")
    args.add("--out", blob)
    args.add("--descriptor", desc)
    args.add("--compresslevel", str(ctx.attr.compresslevel))
    ctx.actions.run(
        executable = ctx.executable._build_image,
        arguments = [args],
        inputs = [ctx.file._venv_path],
        outputs = [blob, desc],
        mnemonic = "OciSitePackagesLayer",
        progress_message = "Packing site-packages layer of %s" % ctx.label,
        # Reads the venv outside the execroot; venv_path.txt names it by the lock's hash, so the
        # cache key still changes with the lock. A remote executor would not have that path.
        execution_requirements = {"no-remote": "1"},
    )
    return blob, desc

def _app_layer(ctx):
    blob, desc = _layer_outputs(ctx, "app")
    info = ctx.attr.binary[DefaultInfo]
    runfiles = info.default_runfiles
    runtime = ctx.toolchains[_PY_TOOLCHAIN].py3_runtime
    # The Bazel launcher stub and the host interpreter launcher make no sense in the image.
    excluded = {f.path: True for f in [info.files_to_run.executable] + runtime.files.to_list()}
    if runtime.interpreter:
        excluded[runtime.interpreter.path] = True
    files = [f for f in runfiles.files.to_list() if f.path not in excluded]

    args = ctx.actions.args()
    args.add("app")
    args.add("--workspace-name", ctx.workspace_name)
    args.add("--out", blob)
    args.add("--descriptor", desc)
    args.add("--compresslevel", str(ctx.attr.compresslevel))
    args.add_all(files, map_each = _file_arg)
    symlinked = []
    for link in runfiles.symlinks.to_list():
        args.add("--root-file=%s/%s\t%s" % (ctx.workspace_name, link.path, link.target_file.path))
        symlinked.append(link.target_file)
    for link in runfiles.root_symlinks.to_list():
        args.add("--root-file=%s\t%s" % (link.path, link.target_file.path))
        symlinked.append(link.target_file)
    args.add_all(runfiles.empty_filenames, format_each = "--empty=" + ctx.workspace_name + "/%s")
    args.use_param_file("@%s", use_always = True)
    args.set_param_file_format("multiline")
    ctx.actions.run(
        executable = ctx.executable._build_image,
        arguments = [args],
        inputs = files + symlinked,
        outputs = [blob, desc],
        mnemonic = "OciAppLayer",
        progress_message = "Packing app layer of %s" % ctx.label,
    )
    return blob, desc

def _main_path(ctx):
    return "%s/%s" % (_APP_ROOT, _runfiles_path(ctx, ctx.attr.binary[PyMainInfo].main))

def _py_oci_image_impl(ctx):
    base_blobs = [f for f in ctx.files.base if f.basename.endswith(".tar.gz")]
    base_descs = [f for f in ctx.files.base if f.extension == "json"]
    if len(base_blobs) != 1 or len(base_descs) > 1:
        fail("base must provide one .tar.gz layer and at most one .json descriptor")
    layers = [struct(
        blob = base_blobs[0],
        desc = base_descs[0] if base_descs else None,
        note = "base " + str(ctx.attr.base.label),
    )]
    if ctx.attr.pip_packages:
        blob, desc = _site_packages_layer(ctx)
        layers.append(struct(blob = blob, desc = desc, note = "pip " + " ".join(ctx.attr.pip_packages)))
    blob, desc = _app_layer(ctx)
    layers.append(struct(blob = blob, desc = desc, note = "app " + str(ctx.attr.binary.label)))

    roots = []
    for imp in ctx.attr.binary[PyInfo].imports.to_list() + [ctx.workspace_name]:
        if imp not in roots:
            roots.append(imp)
    pythonpath = ["%s/%s" % (_APP_ROOT, r) for r in roots]
    if ctx.attr.pip_packages:
        pythonpath.append(_SITE_PACKAGES)
    env = {
        "PYTHONPATH": ":".join(pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "RUNFILES_DIR": _APP_ROOT,
    }
    env.update(ctx.attr.env)

    spec = ctx.actions.declare_file(ctx.label.name + ".layers/spec.json")
    ctx.actions.write(spec, json.encode({
        "layers": [
            {"blob": l.blob.path, "descriptor": l.desc.path if l.desc else None, "created_by": l.note}
            for l in layers
        ],
        "entrypoint": [ctx.attr.python, _main_path(ctx)],
        "cmd": ctx.attr.cmd,
        "env": env,
        "user": ctx.attr.user,
        "workdir": "%s/%s" % (_APP_ROOT, ctx.workspace_name),
        "exposed_ports": ctx.attr.exposed_ports,
        "labels": ctx.attr.labels,
        "ref_name": "latest",
    }))

    out_dir = ctx.actions.declare_directory(ctx.label.name)
    digest = ctx.actions.declare_file(ctx.label.name + ".digest")
    args = ctx.actions.args()
    args.add("assemble")
    args.add("--spec", spec)
    args.add("--out-dir", out_dir.path)
    args.add("--digest-out", digest)
    ctx.actions.run(
        executable = ctx.executable._build_image,
        arguments = [args],
        inputs = [spec] + [l.blob for l in layers] + [l.desc for l in layers if l.desc],
        outputs = [out_dir, digest],
        mnemonic = "OciImageLayout",
        progress_message = "Assembling OCI image %s" % ctx.label,
    )
    return [DefaultInfo(
        files = depset([out_dir, digest]),
        runfiles = ctx.runfiles(files = [out_dir, digest]),
    )]

_py_oci_image = rule(
    implementation = _py_oci_image_impl,
    attrs = {
        "binary": attr.label(mandatory = True, providers = [PyInfo], aspects = [_py_main_aspect]),
        "base": attr.label(allow_files = [".tar.gz", ".json"], default = "@debian_base//:layer"),
        "pip_packages": attr.string_list(doc = "requirements, e.g. grpcio or tritonclient[grpc]"),
        "env": attr.string_dict(),
        "exposed_ports": attr.string_list(doc = "8080 or 8080/tcp"),
        "user": attr.string(default = "65532:65532"),
        "python": attr.string(default = "/usr/bin/python3.11"),
        "cmd": attr.string_list(doc = "the image's Cmd: default arguments to the entrypoint"),
        "labels": attr.string_dict(),
        # gzip level 6: torch's closure (~1 GB) packs in ~31 s to 194 MB; level 1: ~14 s, 223 MB.
        "compresslevel": attr.int(default = 6, values = [1, 2, 3, 4, 5, 6, 7, 8, 9]),
        "_build_image": attr.label(default = "//tools/oci:build_image", executable = True, cfg = "exec"),
        "_venv_path": attr.label(default = "@py_venv//:venv_path.txt", allow_single_file = True),
    },
    toolchains = [_PY_TOOLCHAIN],
)

def py_oci_image(name, binary, tags = [], **kwargs):
    """An OCI image layout `<name>/` and `<name>.digest` for `binary`; always tagged manual.

    Args: base, pip_packages, env, exposed_ports, user, python, cmd, labels, compresslevel.
    """
    _py_oci_image(
        name = name,
        binary = binary,
        tags = tags + ([] if "manual" in tags else ["manual"]),
        **kwargs
    )
