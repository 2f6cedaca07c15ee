"""Leaderboard (SPEC §8, §9): aggregation of the results table (``aggregate``, pure
functions), the published tables (``tables``: shown by the app, written by
``stbench export``), regression comparison (``compare``) and the Streamlit app
(``app.py``, served by ``stbench leaderboard``)."""

from pathlib import Path

APP_SCRIPT = Path(__file__).with_name("app.py")
RESULTS_ENV = "STBENCH_LEADERBOARD_RESULTS"  # the results folder `stbench leaderboard --results` serves
# "1": show that folder on the reference board ("" folder: the reference board alone); unset: the folder as is
OVERLAY_ENV = "STBENCH_LEADERBOARD_OVERLAY"
