"""Two-alternative forced-choice (2AFC) studies of output quality, `impasto study`: `design` (a study folder: the
methods' images, the trials, each participant's randomised order, the JSONL answer log), `render` (building a
study's images with the Engine: SR models, styles, refinement, Gatys), `server` (the loopback web page people
answer on, standard-library http.server) and `report` (preference rates with Wilson 95% intervals, table, plot).

May import: `impasto.engine` and everything below it. Never `serve`, `batch` or `cli`."""
