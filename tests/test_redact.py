"""Credentials (a URL's password or token, secret query parameters, secret variables in setup
lines and container env) reach no file, log or printed line; the job still gets them."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.redact import SECRET_SUFFIXES, SECRET_VARIABLES, SECRET_WORDS, RedactingFilter, redact, redact_values

HARNESS = [sys.executable, "-m", "harness.cli"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # a URL's user info, to the last @ of the authority (as urllib.parse.urlsplit splits it)
        ("http://alice:s3cret@mlflow:5000/", "http://alice:***@mlflow:5000/"),
        ("http://alice:s3cr@tPW@host/", "http://alice:***@host/"),
        ("http://alice:a@b@c@host:5000/x@y", "http://alice:***@host:5000/x@y"),
        ("https://tok3n@host/api", "https://***@host/api"),
        ("https://tok@3n@host", "https://***@host"),
        ("at http://a:b:c@h and https://d:e@f", "at http://a:***@h and https://d:***@f"),
        ("a://b://c:d@e", "a://b://c:***@e"),
        ("sqlite:////scratch/mlflow.db", "sqlite:////scratch/mlflow.db"),
        ("mail alice@example.com", "mail alice@example.com"),
        ("http://host/path@x and a@b", "http://host/path@x and a@b"),
        # secret query parameters, wherever they are
        ("https://h/x?token=abc&x=1#f", "https://h/x?token=***&x=1#f"),
        ("https://h/x?a=1&access_token=abc", "https://h/x?a=1&access_token=***"),
        ("https://h/x?next=/y?api_key=zz&sig=qq", "https://h/x?next=/y?api_key=***&sig=***"),
        ("https://h/o?X-Amz-Signature=ab&X-Amz-Credential=cd", "https://h/o?X-Amz-Signature=***&X-Amz-Credential=***"),
        ("https://h/o?a=1;password=p&key=k", "https://h/o?a=1;password=***&key=***"),
        ("https://h/o?client_secret=s;x=1", "https://h/o?client_secret=***"),  # a value runs on past ;
        ("https://h/o?page=2&sort_key=name&monkey=1", "https://h/o?page=2&sort_key=name&monkey=1"),
        ("uri 'http://h/?Token=abc' ok", "uri 'http://h/?Token=***' ok"),
        # secret variables: shell assignments (setup lines, container launchers)
        ("export HF_TOKEN=abc", "export HF_TOKEN=***"),
        ("export HF_TOKEN='a b' && echo hi", "export HF_TOKEN=*** && echo hi"),
        ('export WANDB_API_KEY="a b"c next', "export WANDB_API_KEY=*** next"),
        ("HF_TOKEN=abc python x.py", "HF_TOKEN=*** python x.py"),
        ("-e 'HF_TOKEN=a b' -e X=1", "-e 'HF_TOKEN=***' -e X=1"),
        ("--env 'GITHUB_TOKEN=a'\"'\"'b' rest", "--env 'GITHUB_TOKEN=***' rest"),
        ("export APPTAINERENV_AWS_SESSION_TOKEN='a,b'", "export APPTAINERENV_AWS_SESSION_TOKEN=***"),
        ("in 'export HF_TOKEN=abc\\x1b': values", "in 'export HF_TOKEN=***': values"),
        ("export MY_SERVICE_PASSWORD=pw; export TOKEN=t", "export MY_SERVICE_PASSWORD=***; export TOKEN=***"),
        # ... and mappings (YAML, JSON: the quotes stay, so printed JSON is still JSON)
        ('{"HF_TOKEN": "abc", "B": "c"}', '{"HF_TOKEN": "***", "B": "c"}'),
        ("env: {HF_TOKEN: abc, B: c}", "env: {HF_TOKEN: ***, B: c}"),
        ("AWS_SECRET_ACCESS_KEY: abc def\nnext: line", "AWS_SECRET_ACCESS_KEY: ***\nnext: line"),
        # not secrets: shown as written
        (
            "TOKENIZERS_PARALLELISM=false MAX_NEW_TOKENS=5 AWS_ACCESS_KEY_ID=AKIA PYTHONPATH=/x",
            "TOKENIZERS_PARALLELISM=false MAX_NEW_TOKENS=5 AWS_ACCESS_KEY_ID=AKIA PYTHONPATH=/x",
        ),
        ("echo $HF_TOKEN; XTOKEN=1; model_flops_per_token=5", "echo $HF_TOKEN; XTOKEN=1; model_flops_per_token=5"),
        ("", ""),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert redact(shown) == shown  # nothing left to hide, and *** is kept as it is


@pytest.mark.parametrize("name", sorted(SECRET_VARIABLES | set(SECRET_SUFFIXES)))
def test_every_listed_secret_variable_is_hidden(name: str) -> None:
    assert any(word in name for word in SECRET_WORDS)  # the quick look before the full pass sees it
    for text in (f"export {name}=v4lue", f"{name}: v4lue", f'"{name}": "v4lue"', f"-e '{name}=v4lue'"):
        assert "v4lue" not in redact(text), text
        assert name in redact(text), text


def test_values_of_secret_keys_are_hidden_in_nested_data() -> None:
    data = {
        "tags": {"hf_token": "abc", "note": "export HF_TOKEN=abc", "n": 1},
        "tracking": {"uri": "http://u:p@h/?token=t"},
        "efficiency": {"model_flops_per_token": 3.0},  # a number under a secret-looking key: a number
        "list": ["http://t@h", 2],
    }
    assert redact_values(data) == {
        "tags": {"hf_token": "***", "note": "export HF_TOKEN=***", "n": 1},
        "tracking": {"uri": "http://u:***@h/?token=***"},
        "efficiency": {"model_flops_per_token": 3.0},
        "list": ["http://***@h", 2],
    }


# 10 MB values as the issue tried them: a name, a password of @s, a query string, URL-like text
TEN_MB = {
    "a name": "a" * 10_000_000,
    "upper case": "A" * 10_000_000,
    "a password of @s": "http://u:" + "@" * 10_000_000 + "h/",
    "a long query": "http://h/?token=" + "t" * 10_000_000,
    "many schemes": "://" * 3_400_000,
    "an open quote": "export HF_TOKEN='" + "x" * 10_000_000,
}
# dense text where every few characters start a candidate (1 MB each: linear is ~0.1 s; the old
# pattern's rescans, or any backtracking, would take minutes)
DENSE = {
    "assignments": "KEY=" * 250_000,
    "secret assignments": "HF_TOKEN=x " * 90_000,
    "parameters": "?a=" * 330_000,
    "secret parameters": "?token=" * 140_000,
    "credentials": "://a@" * 200_000,
    "escaped quotes": 'HF_TOKEN: "' + '\\"' * 500_000,
    "words": "A " * 500_000,
}


@pytest.mark.parametrize("text", [*TEN_MB.values(), *DENSE.values()], ids=[*TEN_MB, *DENSE])
def test_redaction_is_linear(text: str) -> None:
    started = time.process_time()
    redact(text)
    assert time.process_time() - started < 1.0


def test_the_log_filter_redacts_messages_and_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    handler = logging.FileHandler(path)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("harness.test_redact")
    logger.addHandler(handler)
    try:
        logger.warning("uri %s", "http://alice:s3cr@tPW@h/")
        try:
            raise RuntimeError("export HF_TOKEN=hfSecret failed for http://h/?token=qTok3n")
        except RuntimeError:
            logger.exception("setup")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert "alice:***@h/" in text and "HF_TOKEN=***" in text and "RuntimeError" in text
    for secret in ("s3cr", "tPW", "hfSecret", "qTok3n"):
        assert secret not in text


SECRETS = ("s3cr", "tPW", "qTok3n", "hfSetupSecret", "pw x", "wbTagSecret", "hfEnvSecret", "wb a,b")


def _no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}"


def _texts(folder: Path, skip: str | None = None) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text(errors="replace")
        for p in folder.rglob("*")
        if p.is_file() and (skip is None or skip not in p.parts) and p.suffix not in (".png", ".safetensors")
    }


def _harness(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HARNESS + args, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_real_cell_keeps_no_secret_but_its_job_gets_them(tmp_path: Path, unused_port: int) -> None:
    """A matrix whose tracking URI has a password with an @ and a token in its query, whose setup
    lines export secrets and whose cells carry a secret in a tag: plan and matrix print none of
    them, and no file of the run keeps one (result.json, config.yaml, log.txt, job and run
    records), while the job's setup line sees the real value. Only the job's own input in the
    submitit folder (the pickled call) carries them, as it must."""
    seen = tmp_path / "seen.txt"
    matrix = {
        "name": "redact",
        "output_dir": "out",
        "executor": {"cluster": "local"},
        "resources": {
            "cpus": 1,
            "setup": [
                "export HF_TOKEN=hfSetupSecret",
                "export MLFLOW_TRACKING_PASSWORD='pw x'",
                f'printf %s "$HF_TOKEN" > {seen}',
            ],
        },
        "tracking": {"uri": f"http://alice:s3cr@tPW@127.0.0.1:{unused_port}/?token=qTok3n"},
        "models": ["tiny-bert"],
        "methods": ["lora"],
        "tasks": ["emotion"],
        "defaults": {
            "train": {"max_steps": 2, "progress_bar": False},
            "data": {"max_train_samples": 8, "max_eval_samples": 4, "max_source_tokens": 32},
            "tags": {"note": "export WANDB_API_KEY=wbTagSecret"},
        },
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))

    plan = _harness(["plan", "m.yaml"], tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "export HF_TOKEN=***" in plan.stdout and "alice:***@127.0.0.1" in plan.stdout
    ran = _harness(["matrix", "m.yaml", "--wait"], tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert seen.read_text() == "hfSetupSecret"  # the job ran its setup line with the real value

    for name, text in {"plan": plan.stdout + plan.stderr, "matrix": ran.stdout + ran.stderr}.items():
        _no_secret(text, f"the output of harness {name}")
    texts = _texts(tmp_path / "out", skip=".submitit")
    cell = next(name.rsplit("/", 1)[0] for name in texts if name.endswith("result.json"))
    for kept in ("result.json", "config.yaml", "log.txt", "job.json", "run.json"):
        assert f"{cell}/{kept}" in texts
    for name, text in texts.items():
        _no_secret(text, name)
    assert "alice:***@" in texts[f"{cell}/result.json"] and "token=***" in texts[f"{cell}/config.yaml"]


def test_plan_hides_container_env_values(tmp_path: Path) -> None:
    """The container launcher that ``harness plan`` shows (``-e NAME=value``) hides secret ``env``
    values; the launcher itself, written at submission, keeps them for the job."""
    matrix = {
        "name": "redact",
        "output_dir": "out",
        "executor": {
            "cluster": "slurm",
            "fallback_to_local": True,
            "container": {
                "runtime": "docker",
                "image": "harness:latest",
                "env": {"HF_TOKEN": "hfEnvSecret", "WANDB_API_KEY": "wb a,b", "PLAIN": "shown"},
            },
        },
        "models": ["tiny-bert"],
        "methods": ["lora"],
        "tasks": ["emotion"],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))
    plan = _harness(["plan", "m.yaml"], tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "-e HF_TOKEN=***" in plan.stdout and "'WANDB_API_KEY=***'" in plan.stdout
    assert "-e PLAIN=shown" in plan.stdout
    _no_secret(plan.stdout + plan.stderr, "the output of harness plan")


def test_run_local_keeps_no_password(tmp_path: Path, unused_port: int) -> None:
    uri = f"http://alice:s3cr@tPW@127.0.0.1:{unused_port}/?token=qTok3n"
    done = _harness(
        [
            "run",
            "--local",
            "--model",
            "tiny-bert",
            "--method",
            "lora",
            "--task",
            "emotion",
            "--max-steps",
            "2",
            "--set",
            "data.max_train_samples=8",
            "--set",
            "data.max_eval_samples=4",
            "--set",
            "train.progress_bar=false",
            "--set",
            "tags.note=export WANDB_API_KEY=wbTagSecret",
            "--tracking-uri",
            uri,
            "--output",
            "cell",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "tracking: failed" in done.stdout and "alice:***@" in (tmp_path / "cell" / "result.json").read_text()
    _no_secret(done.stdout + done.stderr, "the output of harness run")
    for name, text in _texts(tmp_path / "cell").items():
        _no_secret(text, name)
