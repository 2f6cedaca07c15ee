"""Leaderboard: aggregation of the results table and the Streamlit app (engine issue)."""
