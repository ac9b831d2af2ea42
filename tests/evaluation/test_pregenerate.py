"""Pre-generation through the real tiny SD pipeline (evaluation.pregenerate)."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from db.engine import make_engine, session_factory, upgrade
from db.models import Checkpoint, GenerationJob, Image, Study, Variant
from evaluation.checkpoints import weights_sha256
from evaluation.jobs import worker_running
from evaluation.plan import StudySpec, create_study
from evaluation.pregenerate import (
    GenerationError,
    GenerationOptions,
    WorkerBusyError,
    main,
    run_generation,
    worker_lock,
)

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ("cat maid", "cat, maid", "1boy 1girl in class room")


def cpu_options(data_dir: Path) -> GenerationOptions:
    """Options of a plain CPU run in `data_dir`."""
    return GenerationOptions(data_dir=data_dir, device="cpu")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models render fastest on one thread (several spin-wait on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tiny_clip_dir, tmp_path_factory):
    """Two untrained tiny VT checkpoints that differ in vicinity (2 and 1)."""
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    from deprojector.checkpoint import save_checkpoint
    from deprojector.model import VTDeprojector, vt_config

    text_model = CLIPTextModelWithProjection.from_pretrained(tiny_clip_dir / "text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir / "tokenizer")
    root = tmp_path_factory.mktemp("checkpoints")
    folders = {}
    for name, preset in (("v2", "vt-final"), ("v1", "vt-vicinity-1")):
        model = VTDeprojector.from_clip(text_model, tokenizer, vt_config(preset, 32), seed=1)
        folders[name] = save_checkpoint(model, root / name / "epoch-1", {"seed": 1})
    return folders


def build_arena(url, data_dir, checkpoints, tiny_sd_dir):
    """A migrated database with study "s": v2 vs v1 and reference vs v2, 3 prompts, 2 seeds
    (18 images to render), checkpoints copied under `data_dir`."""
    import shutil

    engine = make_engine(url)
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as s:
        for name, vicinity in (("v2", 2), ("v1", 1)):
            target = data_dir / "checkpoints" / name / "epoch-1"
            shutil.copytree(checkpoints[name], target)
            s.add(
                Checkpoint(
                    variant=Variant(name=name, kind="vt", hyperparameters={"vicinity": vicinity}),
                    label="epoch-1",
                    path=target.relative_to(data_dir).as_posix(),
                    sha256=weights_sha256(target),  # checked before generation uses it
                )
            )
        s.flush()
        create_study(
            s,
            StudySpec(
                name="s",
                variants=("v2", "v1", "reference"),
                base="v2",
                checkpoint_labels=("epoch-1",),
                prompts=PROMPTS,
                seeds=(0, 1),
                settings={
                    "model_path": str(tiny_sd_dir),
                    "scheduler": "ddim",
                    "steps": 2,
                    "guidance": 7.5,
                    "width": 64,
                    "height": 64,
                },
                reference_comparisons=("v2",),
            ),
        )
    return engine, factory


@pytest.fixture
def arena(tmp_path, tiny_sd_dir, checkpoints):
    """build_arena on a SQLite file in the data dir."""
    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir / 'arena.sqlite3'}"
    engine, factory = build_arena(url, data_dir, checkpoints, tiny_sd_dir)
    yield engine, factory, data_dir
    engine.dispose()


def assert_complete(factory, data_dir):
    """Every image of the study has exactly one valid PNG whose sha256 matches its row; no
    orphans, no temp files, every job done."""
    with factory() as s:
        images = list(s.scalars(select(Image)))
        statuses = set(s.scalars(select(GenerationJob.status)))
        study_status = s.scalar(select(Study.status))
    assert statuses == {"done"} and study_status == "open"
    paths = [image.path for image in images]
    assert None not in paths and len(set(paths)) == len(images) == 18
    for image in images:
        assert image.settings["seed"] == image.seed and image.settings["batch_size"] >= 1
        file = data_dir / image.path
        assert hashlib.sha256(file.read_bytes()).hexdigest() == image.sha256
        assert file.name == f"{image.sha256}.png"
        with PILImage.open(file) as png:
            png.verify()
            assert png.size == (64, 64)
    on_disk = {p.relative_to(data_dir).as_posix() for p in (data_dir / "images").rglob("*")}
    on_disk = {p for p in on_disk if not (data_dir / p).is_dir()}
    assert on_disk == set(paths)


@pytest.mark.slow
def test_renders_every_image_once_and_reruns_do_nothing(arena):
    """A run renders all 18 images through the tiny SD pipeline; a second run renders none."""
    engine, factory, data_dir = arena
    seen = []
    report = run_generation(
        engine, "s", cpu_options(data_dir), progress=lambda f, m: seen.append(f)
    )
    assert (report.rendered, report.remaining, report.total) == (18, 0, 18)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert_complete(factory, data_dir)
    again = run_generation(engine, "s", cpu_options(data_dir))
    assert (again.rendered, again.remaining) == (0, 0)


@pytest.mark.slow
def test_survives_kill_9_and_resumes(arena):
    """SIGKILL of the CLI mid-run, then a rerun: every image present exactly once, valid, hashed."""
    engine, factory, data_dir = arena
    env = {**os.environ, "ARENA_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = "1"
    env.pop("DATABASE_URL", None)
    worker = subprocess.Popen(
        [sys.executable, "-m", "evaluation", "generate", "--study", "s", "--batch-size", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        done = 0
        while done < 4 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
            with factory() as s:
                done = s.scalar(
                    select(func.count(GenerationJob.id)).where(GenerationJob.status == "done")
                )
        assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
        assert done >= 4, "the worker rendered nothing within 120 s"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stderr.close()
    with factory() as s:
        done_before = s.scalar(select(func.count(Image.id)).where(Image.path.is_not(None)))
    assert 4 <= done_before < 18

    # a leftover temp file and an orphan, as a kill between write and commit would leave
    stray = data_dir / "images" / "00"
    stray.mkdir(parents=True, exist_ok=True)
    (stray / ".tmp-0000-1-ab.png").write_bytes(b"half")
    (stray / ("0" * 64 + ".png")).write_bytes(b"not referenced")

    report = run_generation(engine, "s", cpu_options(data_dir))
    assert report.rendered == 18 - done_before
    assert_complete(factory, data_dir)


@pytest.mark.slow
def test_missing_checkpoint_stops_before_rendering(arena, capsys):
    """A study whose checkpoint folder is gone exits 2 naming the folder; nothing is rendered."""
    engine, factory, data_dir = arena
    import shutil

    shutil.rmtree(data_dir / "checkpoints" / "v1" / "epoch-1")
    os.environ["ARENA_DATA_DIR"] = str(data_dir)
    try:
        assert main(["--study", "s"]) == 2
    finally:
        del os.environ["ARENA_DATA_DIR"]
    assert "checkpoints/v1/epoch-1 does not exist" in capsys.readouterr().err
    with pytest.raises(GenerationError, match="v1/epoch-1"):
        run_generation(engine, "s", cpu_options(data_dir))
    with factory() as s:
        assert s.scalar(select(func.count(Image.id)).where(Image.path.is_not(None))) == 0


def test_worker_running_tells_whether_the_lock_is_held(tmp_path):
    """worker_running(data_dir) is True exactly while a worker holds the SQLite data dir's lock."""
    assert not worker_running(tmp_path)
    with worker_lock(tmp_path):
        assert worker_running(tmp_path)
    assert not worker_running(tmp_path)


@pytest.mark.slow
def test_worker_log_has_plain_progress_lines(arena, capsys, monkeypatch):
    """A worker whose stderr is a log file (not a terminal) writes plain progress lines, no
    carriage returns or escape codes of a progress bar."""
    engine, factory, data_dir = arena
    monkeypatch.setenv("ARENA_DATA_DIR", str(data_dir))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["--study", "s", "--device", "cpu"]) == 0
    log = capsys.readouterr().err
    assert "\r" not in log and "\x1b" not in log
    lines = log.splitlines()
    assert lines[0] == "rendering: 1/18 images" and lines[-1] == "rendering: 18/18 images"


def test_second_sqlite_worker_is_refused(arena):
    """While one worker holds the SQLite data dir, another gets WorkerBusyError and renders nothing."""
    engine, factory, data_dir = arena
    with worker_lock(data_dir):
        with pytest.raises(WorkerBusyError, match="only one worker"):
            run_generation(engine, "s", cpu_options(data_dir))


@pytest.mark.slow
def test_failing_renders_are_retried_then_recorded(arena):
    """A render that raises is retried up to max_attempts; the error and count stay on the job."""
    from deprojector.generate import ImageGenerator, SDSettings

    engine, factory, data_dir = arena
    with factory() as s:
        settings = SDSettings(**s.scalar(select(Study.settings)))

    class FailsOnComposed(ImageGenerator):
        """Fault injection: the real generator, except composed prompts raise."""

        def render(self, requests, batch_size=8):
            if any("," in r.prompt for r in requests):
                raise RuntimeError("injected failure")
            return super().render(requests, batch_size)

    generator = FailsOnComposed(settings, device="cpu")
    report = run_generation(
        engine, "s", GenerationOptions(data_dir=data_dir, max_attempts=2), generator=generator
    )
    assert (report.rendered, report.failed, report.remaining) == (12, 6, 6)
    with factory() as s:
        failed = list(s.scalars(select(GenerationJob).where(GenerationJob.status == "failed")))
        assert all(j.attempts == 2 and "injected failure" in j.last_error for j in failed)
        assert all(j.image.prompt.text == "cat, maid" for j in failed)
    report = run_generation(
        engine, "s", GenerationOptions(data_dir=data_dir, retry_failed=True, device="cpu")
    )
    assert (report.rendered, report.remaining) == (6, 0)
    assert_complete(factory, data_dir)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database on the TEST_DATABASE_URL server, dropped afterwards."""
    import uuid

    from db.engine import normalize_url

    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("TEST_DATABASE_URL not set (start one with tests/db/start_postgres.sh)")
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    name = f"arena_pregen_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield normalize_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_workers_share_the_queue_without_overlap(
    postgres_url, tmp_path, tiny_sd_dir, checkpoints
):
    """Three concurrent workers on PostgreSQL (SKIP LOCKED) render the 18 images exactly once."""
    import threading

    from deprojector.generate import ImageGenerator, SDSettings

    data_dir = tmp_path / "data"
    engine, factory = build_arena(postgres_url, data_dir, checkpoints, tiny_sd_dir)
    with factory() as s:
        generator = ImageGenerator(SDSettings(**s.scalar(select(Study.settings))), device="cpu")
    reports, errors = {}, []

    def work(worker_id):
        try:
            reports[worker_id] = run_generation(
                engine,
                "s",
                GenerationOptions(data_dir=data_dir, worker_id=worker_id, batch_size=2),
                generator=generator,
            )
        except Exception as error:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sum(r.rendered for r in reports.values()) == 18
    with factory() as s:
        claimed = set(s.scalars(select(GenerationJob.claimed_by)))
    assert len(claimed - {None}) >= 2  # the work really was shared
    assert_complete(factory, data_dir)
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_reclaims_only_stale_claims(postgres_url, tmp_path, tiny_sd_dir, checkpoints):
    """On PostgreSQL a 'running' job claimed two hours ago is re-rendered; a fresh claim (a live
    worker's) is left alone and the study stays 'generating'."""
    from datetime import UTC, datetime, timedelta

    data_dir = tmp_path / "data"
    engine, factory = build_arena(postgres_url, data_dir, checkpoints, tiny_sd_dir)
    with factory.begin() as s:
        stale, live = s.scalars(select(GenerationJob).order_by(GenerationJob.id).limit(2))
        stale.status, stale.claimed_by = "running", "dead-worker"
        stale.claimed_at = datetime.now(UTC) - timedelta(hours=2)
        live.status, live.claimed_by, live.claimed_at = "running", "live-worker", datetime.now(UTC)
        stale_id, live_id = stale.id, live.id
    report = run_generation(
        engine, "s", GenerationOptions(data_dir=data_dir, device="cpu", worker_id="me")
    )
    assert (report.rendered, report.remaining) == (17, 1)
    with factory() as s:
        assert s.get(GenerationJob, stale_id).status == "done"
        assert s.get(GenerationJob, live_id).claimed_by == "live-worker"
        assert s.scalar(select(Study.status)) == "generating"
    engine.dispose()
