"""The Dockerfile's invariants (it cannot be built here: no container engine). hadolint lints
it too, in scripts/chart-test.sh."""

import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Dockerfile").read_text()
# Instructions with their continuation lines joined, comments dropped.
LINES = [l.strip() for l in re.sub(r"\\\n", " ", TEXT).splitlines() if l.strip() and not l.lstrip().startswith("#")]
ARGS = dict(re.match(r"ARG (\w+)=(\S+)", l).groups() for l in LINES if re.match(r"ARG \w+=", l))


def stages():
    out = []
    for l in LINES:
        if l.startswith("FROM "):
            out.append([l])
        elif out:
            out[-1].append(l)
    return out


def expand(s):
    return re.sub(r"\$\{(\w+)\}", lambda m: ARGS.get(m.group(1), m.group(0)), s)


def test_multi_stage():
    st = stages()
    assert len(st) >= 2
    assert re.match(r"FROM \S+ AS build$", st[0][0])
    assert any(l.startswith("COPY --from=build ") for l in st[-1])


def test_locked_release_build_of_the_binary():
    build = " ".join(stages()[0])
    assert re.search(r"cargo build --release --locked -p switchboard\b", build)


def test_base_images_pinned_never_latest():
    for st in stages():
        image = expand(st[0].split()[1])
        name, _, tag = image.rpartition(":")
        assert name and tag and "/" not in tag, f"{image}: no tag"
        assert tag != "latest" and "latest" not in tag.split("-"), image
        assert "$" not in image, f"{image}: unresolved ARG"
    assert expand(stages()[0][0].split()[1]) == "docker.io/library/rust:1.94-slim-bookworm"


def test_runtime_is_distroless_nonroot():
    final = stages()[-1]
    assert final[0] in ("FROM gcr.io/distroless/cc-debian12:nonroot",) or final[0].startswith("FROM docker.io/library/debian:")
    users = [l for l in final if l.startswith("USER ")]
    assert users and users[-1] in ("USER 65532", "USER 65532:65532", "USER nonroot", "USER nonroot:nonroot")
    # Nothing is written at run time: no VOLUME, no writable state directory in the image.
    assert not [l for l in final if l.startswith(("VOLUME", "RUN "))]


def test_entrypoint_and_listen_addresses():
    final = stages()[-1]
    [ep] = [l for l in final if l.startswith("ENTRYPOINT ")]
    assert json.loads(ep[len("ENTRYPOINT "):]) == ["/switchboard"]
    env = " ".join(l for l in final if l.startswith("ENV "))
    assert "SWITCHBOARD_EDGE_ADDR=0.0.0.0:4000" in env and "SWITCHBOARD_ADMIN_ADDR=0.0.0.0:4001" in env


def test_oci_labels():
    labels = " ".join(l for l in stages()[-1] if l.startswith("LABEL "))
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_dockerignore_keeps_the_context_small():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore and "*" in ignore, "deny by default"
    for keep in ("!Cargo.toml", "!Cargo.lock", "!services/", "!loadtest/"):
        assert keep in ignore
    assert "loadtest/results/" in ignore and "**/node_modules/" in ignore
