"""Folder jobs: `job` (tasks, the per-image step, the manifest records), `local` (a process pool on this
machine), `ray_cluster` (the same step on Ray actors) and `run` (the driver that plans, resumes and records).

May import: `impasto.engine` and everything below it. Never `serve` or `cli`."""
