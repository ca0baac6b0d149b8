"""The library: discovery, version checks, and prototypes and struct layouts that match moert.h and
moert_plugin.h."""

from __future__ import annotations

import ctypes
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import moert
from moert import _lib, _types
from conftest import PACKAGE_ROOT, REPO_ROOT

HEADER = REPO_ROOT / "include" / "moert.h"
PLUGIN_HEADER = REPO_ROOT / "include" / "moert_plugin.h"
needs_header = pytest.mark.skipif(
    not (HEADER.is_file() and PLUGIN_HEADER.is_file()), reason="moert.h is not in this checkout"
)


def run_python(code: str, env: Dict[str, Optional[str]]) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter that imports this checkout's package, with `env` changes."""
    environment = dict(os.environ)
    for key, value in env.items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    prelude = f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r}); import moert\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, env=environment, timeout=120,
    )


# Versions


def header_defines(header: Path = HEADER) -> Dict[str, str]:
    """Each ``#define MOERT_<NAME> <value>`` of a header, the value as written."""
    return dict(re.findall(r"#define\s+(MOERT_\w+)\s+(\S+)", header.read_text()))


def test_versions() -> None:
    """The package's version is the one of moert.h it mirrors, and the library loaded is that version."""
    assert moert.__version__ == _types.MOERT_VERSION
    assert moert.version() == _types.MOERT_VERSION
    assert moert.version_number() == _types.MOERT_VERSION_NUMBER
    assert moert.abi_version() == _types.MOERT_ABI_VERSION == 1
    assert os.path.isfile(moert.library_path())


@needs_header
def test_versions_match_the_header() -> None:
    defines = header_defines()
    assert defines["MOERT_VERSION"].strip('"') == _types.MOERT_VERSION
    assert int(defines["MOERT_VERSION_NUMBER"]) == _types.MOERT_VERSION_NUMBER
    assert int(defines["MOERT_ABI_VERSION"]) == _types.MOERT_ABI_VERSION


def test_pyproject_takes_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "moert._types.MOERT_VERSION"}


# Discovery


def test_missing_library_lists_what_was_tried(tmp_path: Path) -> None:
    missing = tmp_path / "libmoert.so"
    result = run_python(
        """
        try:
            moert.version()
        except moert.LibraryNotFoundError as error:
            print("tried:", error.tried)
            print(error)
        """,
        {"MOERT_LIBRARY": str(missing)},
    )
    assert result.returncode == 0, result.stderr
    assert str(missing) in result.stdout and "no such file" in result.stdout
    assert "MOERT_LIBRARY" in result.stdout


def test_non_library_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "libmoert.so"
    bogus.write_bytes(b"not an ELF file")
    result = run_python(
        """
        try:
            moert.Model(".")
        except moert.LibraryNotFoundError as error:
            print(error.tried[0][0]); print(error.tried[0][1])
        """,
        {"MOERT_LIBRARY": str(bogus)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(bogus) and lines[1]


def test_library_without_moert_functions_is_refused(tmp_path: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    source = tmp_path / "fake.c"
    source.write_text("unsigned moert_abi_version(void) { return 2; }\n")
    library = tmp_path / "libmoert.so"
    subprocess.run([cc, "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    result = run_python(
        """
        try:
            moert.version()
        except moert.LibraryNotFoundError as error:
            print(error.tried[0][1])
        """,
        {"MOERT_LIBRARY": str(library)},
    )
    assert result.returncode == 0, result.stderr
    assert "missing moert_version" in result.stdout


def test_library_from_a_directory() -> None:
    folder = Path(moert.library_path()).parent
    result = run_python("print(moert.library_path())", {"MOERT_LIBRARY": str(folder)})
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == folder


def test_repository_build_is_found_without_the_variable() -> None:
    staged = REPO_ROOT / "build" / "lib" / "libmoert.so"
    if not staged.exists():
        pytest.skip("no staged build in this checkout (run make)")
    result = run_python("print(moert.library_path())", {"MOERT_LIBRARY": None})
    assert result.returncode == 0, result.stderr
    assert os.path.realpath(result.stdout.strip()) == os.path.realpath(staged)


def test_search_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOERT_LIBRARY", "/opt/custom/libmoert.so")
    assert _lib.candidates() == ["/opt/custom/libmoert.so"]
    monkeypatch.delenv("MOERT_LIBRARY")
    found = _lib.candidates()
    assert found[-1] == "libmoert.so.1"
    if HEADER.is_file():
        staged = found.index(str(REPO_ROOT / "build" / "lib" / "libmoert.so"))
        assert found.index(str(REPO_ROOT / ".build" / "release" / "libmoert.so")) == staged + 1
        assert all(not path.startswith(str(PACKAGE_ROOT / "moert")) for path in found[staged:])


def test_explicit_second_library_is_refused(tmp_path: Path) -> None:
    assert moert.load_library() == moert.library_path()
    with pytest.raises(moert.LibraryNotFoundError, match="already loaded"):
        moert.load_library(str(tmp_path / "other.so"))


# Prototypes and layouts


def header_functions(header: Path = HEADER) -> List[str]:
    text = header.read_text()
    return re.findall(r"MOERT_API\s+[^;()]*?\b(moert_\w+)\s*\(", text)


@needs_header
def test_every_header_function_has_a_prototype() -> None:
    functions = header_functions()
    plugin_functions = header_functions(PLUGIN_HEADER)
    assert len(functions) >= 37 and len(plugin_functions) == 6
    # Every MOERT_API function of both headers is declared, in header order, and nothing else.
    assert list(_lib.PROTOTYPES) == functions + plugin_functions
    library = _lib.get()
    for name in functions + plugin_functions:
        function = getattr(library, name)
        assert function.argtypes is not None, name
        assert function.argtypes == _lib.PROTOTYPES[name][1], name
        assert function.restype == _lib.PROTOTYPES[name][0], name


@needs_header
def test_functions_newer_than_0_1_0_are_optional() -> None:
    """SINCE lists exactly the functions whose doc comment says ``@since`` a version after 0.1.0, with that version."""
    since = {}
    for header in (HEADER, PLUGIN_HEADER):
        documented = r"/\*\*((?:(?!\*/).)*)\*/\s*MOERT_API[^;(]*?\b(moert_\w+)\s*\("  # a doc comment, then its function
        for comment, name in re.findall(documented, header.read_text(), re.S):
            since[name] = re.findall(r"@since (\d+\.\d+\.\d+)", comment)
    assert sorted(since) == sorted(_lib.PROTOTYPES)
    assert all(len(versions) == 1 for versions in since.values()), since
    assert _lib.SINCE == {name: versions[0] for name, versions in since.items() if versions[0] != "0.1.0"}


@needs_header
def test_init_functions_are_static_inline_wrappers() -> None:
    text = HEADER.read_text()
    for name in ("model", "session", "sampler", "generate"):
        assert re.search(rf"static inline void moert_{name}_options_init\(", text), name
        assert f"moert_{name}_options_init_sized" in _lib.PROTOTYPES
        assert f"moert_{name}_options_init" not in _lib.PROTOTYPES


@needs_header
def test_prototype_arguments_match_the_header() -> None:
    """Argument counts and pointer-ness of each prototype against the header's declaration."""
    for header in (HEADER, PLUGIN_HEADER):
        text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
        for name, params in re.findall(r"MOERT_API\s+[^;()]*?\b(moert_\w+)\s*\(([^)]*)\)", text):
            declared = [p.strip() for p in params.split(",") if p.strip() and p.strip() != "void"]
            argtypes = _lib.PROTOTYPES[name][1]
            assert len(argtypes) == len(declared), name
            for c_param, argtype in zip(declared, argtypes):
                is_pointer = "*" in c_param or c_param.startswith(("moert_token_callback", "moert_log_callback"))
                ctypes_pointer = argtype in (ctypes.c_void_p, ctypes.c_char_p) or hasattr(argtype, "contents") or (
                    isinstance(argtype, type) and issubclass(argtype, ctypes._CFuncPtr)  # type: ignore[attr-defined]
                )
                assert is_pointer == bool(ctypes_pointer), f"{name}: {c_param} vs {argtype}"


def test_library_missing_a_function_is_refused(tmp_path: Path) -> None:
    """A library exporting every function but moert_shutdown is not accepted: all of them are required."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    names = [name for name in _lib.PROTOTYPES if name not in ("moert_shutdown", "moert_abi_version")]
    source = tmp_path / "partial.c"
    source.write_text(
        "unsigned moert_abi_version(void) { return 1; }\n" + "".join(f"void {name}(void) {{}}\n" for name in names)
    )
    library = tmp_path / "libmoert.so"
    subprocess.run([cc, "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    result = run_python(
        """
        try:
            moert.version()
        except moert.LibraryNotFoundError as error:
            print(error.tried[0][1])
        """,
        {"MOERT_LIBRARY": str(library)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "not a moert 1.x library: missing moert_shutdown"


def test_library_before_0_2_0_loads_without_log_callbacks(tmp_path: Path) -> None:
    """A 0.1.0 library (every function but those of SINCE) loads; set_log_callback then raises UnsupportedError."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    versions = {"moert_version", "moert_version_number", "moert_abi_version"}
    stubs = [name for name in _lib.PROTOTYPES if name not in _lib.SINCE and name not in versions]
    source = tmp_path / "old.c"
    source.write_text(
        'const char *moert_version(void) { return "0.1.0"; }\n'
        "unsigned moert_version_number(void) { return 1000; }\n"
        "unsigned moert_abi_version(void) { return 1; }\n" + "".join(f"void {name}(void) {{}}\n" for name in stubs)
    )
    library = tmp_path / "libmoert.so"
    subprocess.run([cc, "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    result = run_python(
        """
        print(moert.version())
        moert.set_log_callback(None)
        try:
            moert.set_log_callback(print)
        except moert.UnsupportedError as error:
            print(int(error.status)); print(error)
        """,
        {"MOERT_LIBRARY": str(library)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "0.1.0",
        str(int(moert.Status.UNSUPPORTED)),
        f"moert_set_log_callback needs libmoert 0.2.0 or later; {library} is version 0.1.0",
    ]


STRUCTS = {
    "moert_model_options": _types.moert_model_options,
    "moert_model_info": _types.moert_model_info,
    "moert_memory_stats": _types.moert_memory_stats,
    "moert_session_options": _types.moert_session_options,
    "moert_sampler_options": _types.moert_sampler_options,
    "moert_generate_options": _types.moert_generate_options,
    "moert_trace": _types.moert_trace,
    "moert_chat_message": _types.moert_chat_message,
    "moert_chat_options": _types.moert_chat_options,
}

PLUGIN_STRUCTS = {
    "moert_tensor": _types.moert_tensor,
    "moert_layer_info": _types.moert_layer_info,
    "moert_router_caps": _types.moert_router_caps,
    "moert_router_input": _types.moert_router_input,
    "moert_router_output": _types.moert_router_output,
    "moert_router_ops": _types.moert_router_ops,
    "moert_expert_ops": _types.moert_expert_ops,
    "moert_host_api": _types.moert_host_api,
}

ALL_STRUCTS = {**STRUCTS, **PLUGIN_STRUCTS}


@needs_header
def test_struct_layouts_match_the_c_compiler(tmp_path: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "moert_plugin.h"', "int main(void) {"]
    for name, struct in ALL_STRUCTS.items():
        c_type = f"struct {name}" if name == "moert_host_api" else name
        lines.append(f'printf("{name} sizeof %zu\\n", sizeof({c_type}));')
        for field, _ in struct._fields_:
            lines.append(f'printf("{name} {field} %zu\\n", offsetof({c_type}, {field}));')
    lines += ["return 0;", "}"]
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines))
    program = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{HEADER.parent}", str(source), "-o", str(program)], check=True)
    expected = {}
    for line in subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout.splitlines():
        struct_name, field, value = line.split()
        expected[(struct_name, field)] = int(value)
    for name, struct in ALL_STRUCTS.items():
        assert ctypes.sizeof(struct) == expected[(name, "sizeof")], name
        for field, _ in struct._fields_:
            assert getattr(struct, field).offset == expected[(name, field)], f"{name}.{field}"


def struct_fields(text: str, name: str) -> List[str]:
    """Field names of `typedef struct name {...} name;` or `struct name {...};` in header text, in order."""
    body = re.search(r"(?:typedef )?struct %s \{(.*?)\}\s*(?:%s)?;" % (name, name), text, re.S)
    assert body, name
    code = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
    code = re.sub(r"//[^\n]*", "", code)
    fields = []
    for declaration in code.split(";"):
        declaration = " ".join(declaration.split())
        if not declaration:
            continue
        pointer = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", declaration)  # a function pointer
        plain = re.search(r"(\w+)\s*(?:\[\s*\w+\s*\])?$", declaration)  # a name, or an array
        match = pointer or plain
        assert match, declaration
        fields.append(match.group(1))
    return fields


@needs_header
def test_struct_fields_match_the_header() -> None:
    for header, structs in ((HEADER, STRUCTS), (PLUGIN_HEADER, PLUGIN_STRUCTS)):
        text = header.read_text()
        for name, struct in structs.items():
            fields = struct_fields(text, name)
            assert fields == [field for field, _ in struct._fields_], name
            assert fields[0] == "struct_size"


@needs_header
def test_every_header_struct_is_mirrored() -> None:
    for header in (HEADER, PLUGIN_HEADER):
        declared = set(re.findall(r"^(?:typedef )?struct (moert_\w+) \{", header.read_text(), re.M))
        assert declared <= set(ALL_STRUCTS), declared - set(ALL_STRUCTS)


def test_hot_path_mirrors_match_the_typed_structs() -> None:
    """The plugin module reads router input and output through pointer-as-address copies of the structs."""
    from moert import plugins

    for raw, typed in ((plugins._RouterInput, _types.moert_router_input), (plugins._RouterOutput, _types.moert_router_output)):
        assert ctypes.sizeof(raw) == ctypes.sizeof(typed)
        assert [f for f, _ in raw._fields_] == [f for f, _ in typed._fields_]
        for field, _ in raw._fields_:
            assert getattr(raw, field).offset == getattr(typed, field).offset, field


@needs_header
def test_constants_match_the_header() -> None:
    defines = header_defines()
    for name in ("MOERT_DTYPE_F32", "MOERT_DTYPE_F16", "MOERT_DTYPE_BF16", "MOERT_DTYPE_MIXED", "MOERT_LOGITS_NONE",
                 "MOERT_LOGITS_LAST", "MOERT_LOGITS_ALL", "MOERT_LOG_ERROR", "MOERT_LOG_WARN", "MOERT_LOG_INFO",
                 "MOERT_LOG_DEBUG", "MOERT_MODEL_TRUST_PLUGIN_PATHS", "MOERT_MODEL_NO_MMAP"):
        assert int(defines[name].rstrip("u"), 0) == getattr(_types, name), name
    for status in moert.Status:
        key = "MOERT_OK" if status == 0 else f"MOERT_ERR_{status.name}"
        assert int(defines[key]) == status, key
    plugin_defines = header_defines(PLUGIN_HEADER)
    for name in ("MOERT_KIND_ROUTER", "MOERT_KIND_EXPERT", "MOERT_PLUGIN_ABI_VERSION", "MOERT_TENSOR_F32",
                 "MOERT_TENSOR_I32", "MOERT_EXPERT_ZERO_COMPUTE", "MOERT_EXPERT_OUTPUT_ZERO",
                 "MOERT_EXPERT_OUTPUT_IDENTITY"):
        assert int(plugin_defines[name].rstrip("u"), 0) == getattr(_types, name), name


def test_options_defaults_come_from_the_library() -> None:
    from moert._support import init_options

    library = _lib.get()
    model = init_options(_types.moert_model_options, library.moert_model_options_init_sized)
    assert model.struct_size == ctypes.sizeof(_types.moert_model_options)
    assert (model.flags, model.max_context, model.expert_budget_bytes, model.expert_budget_percent) == (0, 0, 0, 0.0)
    session = init_options(_types.moert_session_options, library.moert_session_options_init_sized)
    assert session.struct_size == ctypes.sizeof(_types.moert_session_options)
    assert (session.flags, session.n_ctx, session.max_batch) == (0, 0, 0)
    sampler = init_options(_types.moert_sampler_options, library.moert_sampler_options_init_sized)
    assert sampler.struct_size == ctypes.sizeof(_types.moert_sampler_options)
    assert (sampler.temperature, sampler.top_k, sampler.top_p, sampler.seed) == (0.0, 0, 1.0, 0)
    generate = init_options(_types.moert_generate_options, library.moert_generate_options_init_sized)
    assert generate.struct_size == ctypes.sizeof(_types.moert_generate_options)
    assert (generate.max_new_tokens, generate.ignore_eos, bool(generate.sampler)) == (16, 0, False)
    assert (generate.tokenizer, bool(generate.stop_strings), generate.n_stop_strings) == (None, False, 0)
    chat = init_options(_types.moert_chat_options, library.moert_chat_options_init_sized)
    assert chat.struct_size == ctypes.sizeof(_types.moert_chat_options)
    assert (chat.add_generation_prompt, chat.template_name, chat.variables_json) == (1, None, None)


def library_defaults(struct: str) -> ctypes.Structure:
    """The C library's defaults for ``moert_<struct>_options``, filled at run time by its ``*_init_sized``."""
    from moert._support import init_options

    init = getattr(_lib.get(), f"moert_{struct}_options_init_sized")
    return init_options(getattr(_types, f"moert_{struct}_options"), init)


def as_fields(value: Any) -> Tuple[Any, ...]:
    return (value,)


# Each default of a binding parameter that fills a C options field: the function, its parameter, the C struct
# (moert_<struct>_options), its fields, and how the binding turns the Python default into their values.
# Session.generate and generate_all pass a sampler built from their sampling parameters where C's NULL sampler means
# greedy, i.e. the sampler option defaults.
MIRRORED_DEFAULTS: List[Tuple[Callable[..., Any], str, str, Tuple[str, ...], Callable[[Any], Tuple[Any, ...]]]] = [
    (moert.Model, "max_context", "model", ("max_context",), as_fields),
    (moert.Model, "expert_budget", "model", ("expert_budget_bytes", "expert_budget_percent"),
     moert.model.parse_expert_budget),
    (moert.Model, "trust_model_plugins", "model", ("flags",),
     lambda value: (_types.MOERT_MODEL_TRUST_PLUGIN_PATHS if value else 0,)),
    (moert.Model, "mmap", "model", ("flags",), lambda value: (0 if value else _types.MOERT_MODEL_NO_MMAP,)),
    (moert.Model.session, "n_ctx", "session", ("n_ctx",), as_fields),
    (moert.Model.session, "max_batch", "session", ("max_batch",), as_fields),
    (moert.Session, "n_ctx", "session", ("n_ctx",), as_fields),
    (moert.Session, "max_batch", "session", ("max_batch",), as_fields),
    *[
        (function, parameter, "session", fields, convert)
        for function in (moert.Model.session, moert.Session)
        for parameter, fields, convert in (
            ("kv_type", ("kv_type",), lambda value: (moert.KV_TYPES[value],)),
            ("context_shift", ("flags",), lambda value: (_types.MOERT_SESSION_CONTEXT_SHIFT if value else 0,)),
            ("n_keep", ("n_keep",), as_fields),
        )
    ],
    *[
        (function, parameter, "sampler", (parameter,), as_fields)
        for function in (moert.Sampler, moert.Session.generate, moert.Session.generate_all)
        for parameter in ("temperature", "top_k", "top_p", "seed")
    ],
    *[
        (function, parameter, "generate", (parameter,), convert)
        for function in (moert.Session.generate, moert.Session.generate_all)
        for parameter, convert in (("max_new_tokens", as_fields), ("ignore_eos", lambda value: (int(value),)))
    ],
    (moert.Session.generate_all, "tokenizer", "generate", ("tokenizer",), as_fields),
    (moert.Session.generate_all, "stop", "generate", ("n_stop_strings",),
     lambda value: (len(moert.session._stop_strings(value)),)),
    (moert.Session.generate_all, "scmoe_weak_rank", "generate", ("scmoe_weak_rank",),
     lambda value: (-1 if value is None else value,)),
    (moert.Session.generate_all, "scmoe_beta", "generate", ("scmoe_beta",), lambda value: (ctypes.c_float(value).value,)),
    (moert.Session.generate_all, "scmoe_alpha", "generate", ("scmoe_alpha",), lambda value: (ctypes.c_float(value).value,)),
    (moert.Tokenizer.apply_chat_template, "add_generation_prompt", "chat", ("add_generation_prompt",),
     lambda value: (int(value),)),
    (moert.Tokenizer.apply_chat_template, "template_name", "chat", ("template_name",), as_fields),
    (moert.Model.apply_chat_template, "add_generation_prompt", "chat", ("add_generation_prompt",),
     lambda value: (int(value),)),
    (moert.Model.apply_chat_template, "template_name", "chat", ("template_name",), as_fields),
]


@pytest.mark.parametrize(
    "function, parameter, struct, fields, convert",
    MIRRORED_DEFAULTS,
    ids=[f"{row[0].__qualname__}-{row[1]}" for row in MIRRORED_DEFAULTS],
)
def test_binding_defaults_match_the_library(
    function: Callable[..., Any],
    parameter: str,
    struct: str,
    fields: Tuple[str, ...],
    convert: Callable[[Any], Tuple[Any, ...]],
) -> None:
    default = inspect.signature(function).parameters[parameter].default
    options = library_defaults(struct)
    assert convert(default) == tuple(getattr(options, field) for field in fields)


def test_every_mirrored_default_is_compared() -> None:
    """Each parameter with a default of these functions is in MIRRORED_DEFAULTS, except those C has no field for."""
    no_c_field = {"threads", "all_logits", "on_token"}
    listed = {(row[0], row[1]) for row in MIRRORED_DEFAULTS}
    for function in {row[0] for row in MIRRORED_DEFAULTS}:
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.default is not inspect.Parameter.empty and name not in no_c_field:
                assert (function, name) in listed, f"{function.__qualname__}({name}=...)"


def test_sized_init_writes_no_further_than_asked() -> None:
    """An *_init_sized given an older, smaller size leaves the bytes past it untouched."""
    library = _lib.get()
    full = ctypes.sizeof(_types.moert_model_options)
    old = _types.moert_model_options.expert_budget_bytes.offset  # the 0.1.0-pre struct ended before the budget
    buffer = (ctypes.c_ubyte * full)(*([0xAB] * full))
    library.moert_model_options_init_sized(ctypes.cast(buffer, ctypes.POINTER(_types.moert_model_options)), old)
    assert ctypes.c_uint32.from_buffer(buffer).value == old  # struct_size = min(size, library's sizeof)
    assert bytes(buffer)[old:] == b"\xab" * (full - old)
