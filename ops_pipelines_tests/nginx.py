"""The authenticating proxy of deploy/nginx, run for real by the tests: Debian's nginx as a
non-daemon process with everything (pid, logs, temp files) under a test folder, serving the
template of docker-compose.yml rendered as the nginx image renders it (envsubst of its variables)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

from ops_pipelines_tests.conftest import system_program
from ops_pipelines_tests.deployment import running, wait_for

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "deploy" / "nginx" / "dagster.conf.template"
# The variables the template takes: ${NAME} where the nginx image's envsubst puts the service's
# environment (nginx's own variables are $lowercase and left alone).
TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def nginx_binary() -> str:
    return system_program("nginx", "nginx")


def htpasswd_line(user: str, password: str) -> str:
    """``user:<SHA-256 crypt>``, hashed by ``openssl passwd -5`` (the password on stdin, never argv)."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-5", "-stdin"], input=password, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    return f"{user}:{hashed}\n"


def render(values: Mapping[str, str], template: Path = TEMPLATE) -> str:
    """The template with its ``${NAME}`` variables substituted, as the image's envsubst does."""
    text = template.read_text()
    missing = set(TEMPLATE_VARIABLE.findall(text)) - set(values)
    assert not missing, f"{template} needs {sorted(missing)}"
    return TEMPLATE_VARIABLE.sub(lambda m: values[m.group(1)], text)


def main_config(folder: Path, server_conf: Path) -> Path:
    """An nginx.conf around ``server_conf`` (included in the http block, as the image's conf.d is)
    that keeps everything nginx writes under ``folder``."""
    # As root, the workers would switch to nobody, who cannot read the test's private folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {folder}/access.log;\n"
        + "".join(f"    {kind}_temp_path {folder}/{kind}_temp;\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"    include {server_conf};\n"
        "}\n"
    )
    return conf


def prepare(folder: Path, upstream: str, port: int, users: Mapping[str, str]) -> Path:
    """``folder`` holding the htpasswd file of ``users``, the rendered template proxying to
    ``upstream`` on 127.0.0.1:``port``, and the main config; the main config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    htpasswd = folder / "htpasswd"
    htpasswd.write_text("".join(htpasswd_line(u, p) for u, p in users.items()))
    server = folder / "dagster.conf"
    server.write_text(
        render({"DAGSTER_WEBSERVER": upstream, "PROXY_PORT": f"127.0.0.1:{port}", "PROXY_HTPASSWD": str(htpasswd)})
    )
    return main_config(folder, server)


def check_config(conf: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` of ``conf``."""
    folder = conf.parent
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@contextmanager
def proxy_running(folder: Path, upstream: str, port: int, users: Mapping[str, str]) -> Iterator[str]:
    """nginx in the foreground with the template proxying to ``upstream``; its URL once it answers."""
    nginx = nginx_binary()
    conf = prepare(folder, upstream, port, users)
    checked = check_config(conf)
    assert checked.returncode == 0, checked.stderr
    url = f"http://127.0.0.1:{port}"
    log = folder / "nginx.out"

    def diagnostics() -> str:
        return "".join(
            f"\n--- end of nginx {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
            for p in (log, folder / "error.log") if p.exists()
        )

    command = [nginx, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    with running(command, log, dict(os.environ), folder) as process:
        def answers() -> bool:
            assert process.poll() is None, f"nginx exited{diagnostics()}"
            try:
                return requests.get(f"{url}/healthz", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(answers, "nginx answering", 30, diagnostics)
        yield url
