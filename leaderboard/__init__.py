"""Leaderboard: aggregation of the results table (``aggregate``) and regression
comparison (``compare``); the Streamlit app is still to come (leaderboard issue)."""
