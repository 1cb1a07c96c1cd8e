"""A long job says how far it has come: `taskit.report_progress`, read from anywhere by `get_job`.

    python examples/progress.py                                   # in memory
    TASKIT_BROKER_URL=redis://127.0.0.1:6379/0 python examples/progress.py

* `import_rows` (async) reports after every row: a fraction, a message and a little data. The
  calls only replace a value in memory; the worker stores the latest once per
  `progress_interval` (0.05 s here), and the last one before the job settles.
* `resize` is a plain function, run in a thread: it reports the same way.
* `watch` plays the web page: it polls `app.get_job(id).progress` while the worker runs, and
  waits for the import's `progress` event (subscribers hear each stored value) before letting
  the import finish, so what it prints never depends on timing.
"""

from __future__ import annotations

import anyio

from taskit import App, EventKind, JobEvent, Settings, report_progress

app = App(settings=Settings(progress_interval=0.05))  # TASKIT_BROKER_URL, else memory://

halfway = anyio.Event()  # the import waits here until the watcher has seen its progress
seen = anyio.Event()


@app.on(EventKind.PROGRESS)
def on_progress(event: JobEvent) -> None:
    assert event.progress is not None
    if event.task.endswith("import_rows") and event.progress.fraction == 0.5:
        seen.set()


@app.task
async def import_rows(rows: int) -> int:
    for row in range(1, rows // 2 + 1):
        report_progress(row / rows, f"imported {row} of {rows}", row=row)
    await halfway.wait()  # in real life: more work; here, the watcher's turn
    for row in range(rows // 2 + 1, rows + 1):
        report_progress(row / rows, f"imported {row} of {rows}", row=row)
    return rows


@app.task
def resize(images: int) -> str:
    for image in range(1, images + 1):
        report_progress(image / images, f"resized {image} of {images}")
    return f"{images} images"


async def watch(job_id: str) -> None:
    await seen.wait()
    job = await app.get_job(job_id)  # any process can ask: the progress is in the broker
    assert job is not None
    assert job.progress is not None
    print(f"while running: {job.status.value} {job.progress.fraction:.0%} {job.progress.message}")
    halfway.set()


async def main() -> None:
    rows = await import_rows.enqueue(1000)
    images = await resize.enqueue(8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, rows.id)
        await app.worker(concurrency=2).run(burst=True)
    for job_id in (rows.id, images.id):
        done = await app.get_job(job_id)
        assert done is not None
        assert done.progress is not None
        name = done.task.rpartition(".")[2]
        line = f"{done.progress.fraction:.0%} {done.progress.message} {done.progress.data}"
        print(f"{name:<11} {done.status.value:<9} {line}")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
