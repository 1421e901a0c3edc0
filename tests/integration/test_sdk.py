"""The SDK works for a third party: install burrow into a staging prefix,
build sdk/template out of tree against it with pkg-config only, and run the
conformance checker on the result (and on plugins it must reject)."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BURROW_BUILD_DIR", os.path.join(ROOT, "build"))
CHECK = os.path.join(BUILD, "sdk", "burrow-plugin-check")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    dest = tmp_path_factory.mktemp("stage")
    r = run(["meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", str(dest)])
    assert r.returncode == 0, r.stdout + r.stderr
    pcs = glob.glob(str(dest) + "/**/pkgconfig/burrow-plugin.pc", recursive=True)
    assert pcs, "burrow-plugin.pc was not installed"
    return dest, os.path.dirname(pcs[0])


def test_installed_headers_compile_alone(staged, tmp_path):
    dest, _ = staged
    incs = glob.glob(str(dest) + "/**/include", recursive=True)
    for hdr in ("burrow/plugin.h", "burrow/error.h"):
        src = tmp_path / "one.c"
        src.write_text("#include <%s>\nint main(void) { return 0; }\n" % hdr)
        r = run(["cc", "-std=c11", "-Wall", "-Werror", "-I", incs[0], str(src), "-o",
                 str(tmp_path / "one")])
        assert r.returncode == 0, r.stderr
        # C++ callers get extern "C" and no C-only constructs.
        if shutil.which("g++"):
            r = run(["g++", "-x", "c++", "-fsyntax-only", "-Wall", "-Werror", "-I", incs[0],
                     str(src)])
            assert r.returncode == 0, r.stderr


def test_template_builds_out_of_tree_and_conforms(staged, tmp_path):
    dest, pcdir = staged
    env = dict(os.environ, PKG_CONFIG_PATH=pcdir, PKG_CONFIG_SYSROOT_DIR=str(dest))
    src = tmp_path / "template"
    shutil.copytree(os.path.join(ROOT, "sdk", "template"), src)
    r = run(["meson", "setup", str(tmp_path / "b"), str(src)], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(["ninja", "-C", str(tmp_path / "b")], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run([CHECK, str(tmp_path / "b" / "example.so")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "plugin conforms" in r.stdout
    assert "name=example" in r.stdout


def test_checker_rejects_broken_plugins():
    fixtures = os.path.join(BUILD, "tests", "plugins")
    for name, why in (("missing-slot", "lacks mandatory slot 'conn_open'"),
                      ("missing-entry", "does not export bw_plugin_entry"),
                      ("abi-too-new", "built for plugin ABI 2."),
                      ("init-fails", "failed to initialise")):
        r = run([CHECK, os.path.join(fixtures, "fixture-%s.so" % name)])
        assert r.returncode == 1, name
        assert why in r.stdout, (name, r.stdout)
        assert "does NOT conform" in r.stdout
