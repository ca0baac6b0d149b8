"""The library: discovery, version checks, and prototypes and struct layouts that match moert.h."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import moert
from moert import _lib, _types
from conftest import PACKAGE_ROOT, REPO_ROOT

HEADER = REPO_ROOT / "include" / "moert.h"
needs_header = pytest.mark.skipif(not HEADER.is_file(), reason="moert.h is not in this checkout")


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


def test_versions() -> None:
    assert moert.version() == _types.MOERT_VERSION == "0.1.0"
    assert moert.version_number() == _types.MOERT_VERSION_NUMBER
    assert moert.abi_version() == _types.MOERT_ABI_VERSION == 1
    assert moert.__version__ == "0.1.0"
    assert os.path.isfile(moert.library_path())


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
    assert len(functions) >= 24
    assert set(functions) <= set(_lib.PROTOTYPES)
    plugin_header = HEADER.parent / "moert_plugin.h"
    exported = set(functions) | (set(header_functions(plugin_header)) if plugin_header.is_file() else set())
    assert set(_lib.PROTOTYPES) <= exported
    library = _lib.get()
    for name in functions:
        if name in _lib.OPTIONAL and not hasattr(library, name):
            continue
        function = getattr(library, name)
        assert function.argtypes is not None, name
    assert not [name for name in functions if name not in _lib.OPTIONAL and not hasattr(library, name)]


def test_missing_optional_function_raises_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_lib.PROTOTYPES, "moert_not_exported", (None, []))
    with pytest.raises(moert.UnsupportedError, match="moert_not_exported"):
        _lib.function("moert_not_exported")


STRUCTS = {
    "moert_model_options": _types.moert_model_options,
    "moert_model_info": _types.moert_model_info,
    "moert_session_options": _types.moert_session_options,
    "moert_sampler_options": _types.moert_sampler_options,
    "moert_generate_options": _types.moert_generate_options,
    "moert_trace": _types.moert_trace,
}


@needs_header
def test_struct_layouts_match_the_c_compiler(tmp_path: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "moert.h"', "int main(void) {"]
    for name, struct in STRUCTS.items():
        lines.append(f'printf("{name} sizeof %zu\\n", sizeof({name}));')
        for field, _ in struct._fields_:
            lines.append(f'printf("{name} {field} %zu\\n", offsetof({name}, {field}));')
    lines += ["return 0;", "}"]
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines))
    program = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{HEADER.parent}", str(source), "-o", str(program)], check=True)
    expected = {}
    for line in subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout.splitlines():
        struct_name, field, value = line.split()
        expected[(struct_name, field)] = int(value)
    for name, struct in STRUCTS.items():
        assert ctypes.sizeof(struct) == expected[(name, "sizeof")], name
        for field, _ in struct._fields_:
            assert getattr(struct, field).offset == expected[(name, field)], f"{name}.{field}"


@needs_header
def test_struct_fields_match_the_header() -> None:
    text = HEADER.read_text()
    for name, struct in STRUCTS.items():
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (name, name), text, re.S)
        assert body, name
        fields = re.findall(r"^\s*[\w\s\*]+?\b(\w+);", re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S), re.M)
        assert fields == [field for field, _ in struct._fields_], name
        assert fields[0] == "struct_size"


@needs_header
def test_constants_match_the_header() -> None:
    text = HEADER.read_text()
    defines = dict(re.findall(r"#define\s+(MOERT_\w+)\s+(\S+)", text))
    for name in ("MOERT_ABI_VERSION", "MOERT_VERSION_NUMBER", "MOERT_DTYPE_F32", "MOERT_DTYPE_F16", "MOERT_DTYPE_BF16",
                 "MOERT_DTYPE_MIXED", "MOERT_LOGITS_NONE", "MOERT_LOGITS_LAST", "MOERT_LOGITS_ALL"):
        assert int(defines[name]) == getattr(_types, name), name
    assert defines["MOERT_VERSION"].strip('"') == _types.MOERT_VERSION
    for status in moert.Status:
        key = "MOERT_OK" if status == 0 else f"MOERT_ERR_{status.name}"
        assert int(defines[key]) == status, key
    plugin_header = HEADER.parent / "moert_plugin.h"
    if plugin_header.is_file():
        plugin_defines = dict(re.findall(r"#define\s+(MOERT_\w+)\s+(\S+)", plugin_header.read_text()))
        for name in ("MOERT_KIND_ROUTER", "MOERT_KIND_EXPERT"):
            assert int(plugin_defines[name]) == getattr(_types, name), name


def test_options_defaults_come_from_the_library() -> None:
    from moert._support import init_options

    library = _lib.get()
    sampler = init_options(_types.moert_sampler_options, library.moert_sampler_options_init)
    assert sampler.struct_size == ctypes.sizeof(_types.moert_sampler_options)
    assert (sampler.temperature, sampler.top_k, sampler.top_p, sampler.seed) == (0.0, 0, 1.0, 0)
    generate = init_options(_types.moert_generate_options, library.moert_generate_options_init)
    assert (generate.max_new_tokens, generate.ignore_eos, bool(generate.sampler)) == (16, 0, False)
